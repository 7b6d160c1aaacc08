package xlcfg

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-vm/strata/hvm"
	"github.com/strata-vm/strata/storage"
	"github.com/strata-vm/strata/storage/pattern"
)

// Limits that keep parsing bounded whatever the input.
const (
	MaxSize  = hvm.MaxConfigSize // bytes in one config file
	MaxDepth = 32                // nesting of lists
)

// Kind is the type of a value.
type Kind int

// Value kinds. Every atom is a string underneath; Number only records that
// it was written without quotes.
const (
	String Kind = iota
	Number
	List
)

// Value is one parsed value.
type Value struct {
	Kind  Kind
	Text  string   // String: the unescaped text; Number: the literal
	Items []*Value // List
	Line  int
}

// Setting is one key with its final value (after += and repeats).
type Setting struct {
	Key   string
	Value *Value
	Line  int // line of the last assignment
	Lines []int
}

// Config is a parsed xl.cfg or xm file: its settings, without meaning.
type Config struct {
	File     string
	Settings []*Setting // in order of first assignment
	Warnings []Warning
	index    map[string]*Setting
}

// Get returns the setting of key, or nil.
func (c *Config) Get(key string) *Setting { return c.index[key] }

// Warning is something strata skipped or ignored while reading a config,
// with the line it came from.
type Warning struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Key  string `json:"key,omitempty"`
	// Code classifies the warning: "python-preamble", "deprecated-key",
	// "repeated-key", "ignored-key" (dropped: no effect on an HVM
	// guest), "unknown-vif-key", "hyphen-key" (device-model read as
	// device_model), "python-boolean" (xm's True read as 1).
	Code        string `json:"code"`
	Message     string `json:"message"`
	Replacement string `json:"replacement,omitempty"`
}

func (w Warning) String() string {
	return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Message)
}

func errAt(file string, line int, format string, args ...any) error {
	if file == "" {
		// A setting given on its own (Setting), not read from a file.
		return storage.Errorf(storage.ErrInvalid, "%s", fmt.Sprintf(format, args...))
	}
	return storage.Errorf(storage.ErrInvalid, "%s:%d: %s", file, line, fmt.Sprintf(format, args...))
}

// Decode parses the syntax of an xl.cfg or xm file (name is used in
// messages). It executes nothing: the classic xm Python preamble that
// computes device_model is recognised and skipped with a warning, and any
// other code is an error naming the line.
func Decode(name string, data []byte) (*Config, error) {
	if len(data) > MaxSize {
		return nil, storage.Errorf(storage.ErrInvalid, "%s: %d bytes is larger than the %d bytes a config may have", name, len(data), MaxSize)
	}
	p := &parser{name: name, src: data, line: 1, cfg: &Config{File: name, index: map[string]*Setting{}}}
	if err := p.parse(); err != nil {
		return nil, err
	}
	if len(p.preamble) > 0 {
		lines := make([]string, len(p.preamble))
		for i, l := range p.preamble {
			lines[i] = strconv.Itoa(l)
		}
		p.cfg.Warnings = append([]Warning{{
			File: name, Line: p.preamble[0], Code: "python-preamble",
			Message: fmt.Sprintf("skipped the xm Python preamble on lines %s (import, os.uname, arch_libdir, device_model): strata never executes configs and xl ignores device_model", strings.Join(lines, ", ")),
		}}, p.cfg.Warnings...)
	}
	return p.cfg, nil
}

type parser struct {
	name string
	src  []byte
	pos  int
	line int
	cfg  *Config

	key       string // key of the statement being read
	preamble  []int  // lines of the Python idiom that were skipped
	idiomSeen bool   // import/arch/if lines seen: arch_libdir is the idiom's
	inIf      bool   // inside the idiom's if/else block
	libdir    bool   // arch_libdir was set by the idiom
}

func (p *parser) errf(format string, args ...any) error {
	return errAt(p.name, p.line, format, args...)
}

func (p *parser) peek(off int) byte {
	if p.pos+off < len(p.src) {
		return p.src[p.pos+off]
	}
	return 0
}

// skipSpace skips blanks and comments; with nl it also skips newlines.
func (p *parser) skipSpace(nl bool) {
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			p.pos++
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		case c == '\n' && nl:
			p.pos++
			p.line++
		default:
			return
		}
	}
}

func (p *parser) parse() error {
	for {
		p.skipSpace(false)
		if p.pos >= len(p.src) {
			return nil
		}
		switch p.src[p.pos] {
		case '\n':
			p.pos++
			p.line++
			continue
		case ';':
			p.pos++
			continue
		}
		if p.atLineStart() {
			skipped, err := p.idiom()
			if err != nil {
				return err
			}
			if skipped {
				continue
			}
		}
		p.inIf = false
		if err := p.statement(); err != nil {
			return err
		}
	}
}

func (p *parser) atLineStart() bool {
	for i := p.pos - 1; i >= 0; i-- {
		switch p.src[i] {
		case '\n':
			return true
		case ' ', '\t', '\r':
		default:
			return false
		}
	}
	return true
}

// The classic xm preamble, line by line (trimmed, comments allowed after).
var (
	reImport = pattern.New(`^import\s+(os|re)(\s*,\s*(os|re))*\s*(#.*)?$`)
	reArch   = pattern.New(`^arch\s*=\s*os\.uname\(\)\[4\]\s*(#.*)?$`)
	reIf     = pattern.New(`^if\s+re\.search\(\s*(['"])64['"]\s*,\s*arch\s*\)\s*:\s*(#.*)?$`)
	reElse   = pattern.New(`^else\s*:\s*(#.*)?$`)
	reLibdir = pattern.New(`^arch_libdir\s*=\s*(['"])lib(64)?['"]\s*(#.*)?$`)
	reDM     = pattern.New(`^device_model\s*=\s*(['"])/usr/['"]\s*\+\s*arch_libdir\s*\+\s*(['"])/xen/bin/qemu-dm['"]\s*(#.*)?$`)
)

// idiom skips the current line when it is part of the xm Python preamble.
func (p *parser) idiom() (bool, error) {
	end := p.pos
	for end < len(p.src) && p.src[end] != '\n' {
		end++
	}
	text := strings.TrimSpace(string(p.src[p.pos:end]))
	indented := p.pos > 0 && p.src[p.pos-1] != '\n'
	ok := false
	switch {
	case reImport.MatchString(text), reArch.MatchString(text):
		ok, p.idiomSeen = true, true
	case reIf.MatchString(text):
		ok, p.idiomSeen, p.inIf = true, true, true
	case reElse.MatchString(text) && p.inIf:
		ok = true
	case reLibdir.MatchString(text) && (indented && p.inIf || !indented && p.idiomSeen):
		ok, p.libdir = true, true
	case reDM.MatchString(text) && p.libdir:
		ok = true
	}
	if !ok {
		return false, nil
	}
	p.preamble = append(p.preamble, p.line)
	p.pos = end
	return true, nil
}

func isKeyStart(c byte) bool { return c >= 'a' && c <= 'z' }
func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

var pythonWords = []string{"import", "from", "if", "elif", "else", "for", "while", "def", "try", "except", "print", "return", "with", "class", "lambda", "del", "pass", "raise", "global", "assert"}

// codeError explains that a line is code, which strata refuses to run.
func (p *parser) codeError(what string) error {
	end := p.pos
	for end < len(p.src) && p.src[end] != '\n' {
		end++
	}
	start := p.pos
	for start > 0 && p.src[start-1] != '\n' {
		start--
	}
	line := strings.TrimSpace(string(p.src[start:end]))
	if p.secret(line) {
		// A password is never echoed, nor a character of it.
		return p.errf("this line of %s holds a password, so it is not quoted: write key = value with a number, a quoted string or a [ list ] (xl.cfg(5))", p.keyName())
	}
	if len(line) > 60 {
		line = line[:60] + "..."
	}
	looksPython := strings.ContainsAny(line, "()+*") || strings.HasSuffix(line, ":")
	for _, w := range pythonWords {
		if line == w || strings.HasPrefix(line, w+" ") || strings.HasPrefix(line, w+":") || strings.HasPrefix(line, w+"(") {
			looksPython = true
		}
	}
	if looksPython {
		return p.errf("%q looks like Python code, which strata never executes: replace it with plain key = value settings (xl.cfg(5))", line)
	}
	return p.errf("%s in %q: write key = value with a number, a quoted string or a [ list ] (xl.cfg(5))", what, line)
}

// secret tells whether an error at this point could quote a password:
// the statement's key is a password key, or the line names one.
func (p *parser) secret(line string) bool {
	return hvm.SecretKey(p.key) || hvm.SecretValue(line)
}

func (p *parser) keyName() string {
	if p.key == "" {
		return "the file"
	}
	return p.key
}

// currentLine is the text of the line being read.
func (p *parser) currentLine() string {
	start, end := min(p.pos, len(p.src)), min(p.pos, len(p.src))
	for start > 0 && p.src[start-1] != '\n' {
		start--
	}
	for end < len(p.src) && p.src[end] != '\n' {
		end++
	}
	return string(p.src[start:end])
}

func (p *parser) statement() error {
	p.key = ""
	line := p.line
	if !isKeyStart(p.src[p.pos]) {
		return p.codeError(fmt.Sprintf("unexpected %q where a key should start", p.src[p.pos]))
	}
	start := p.pos
	for p.pos < len(p.src) && isKeyChar(p.src[p.pos]) {
		p.pos++
	}
	if p.peek(0) == '-' && isKeyChar(p.peek(1)) {
		// "device-model", as some guides print it: xl's keys have no
		// '-'. One whose '_' spelling is a known key is read as that,
		// with a warning; any other is an error naming it.
		for p.pos < len(p.src) && (isKeyChar(p.src[p.pos]) || p.src[p.pos] == '-') {
			p.pos++
		}
		typed := string(p.src[start:p.pos])
		under := strings.ReplaceAll(typed, "-", "_")
		if !knownKey(under) {
			return p.errf("%q is not an xl key: keys have no '-'; did you mean %q? (xl.cfg(5) lists the keys)", typed, under)
		}
		p.cfg.Warnings = append(p.cfg.Warnings, Warning{File: p.name, Line: line, Key: under, Code: "hyphen-key",
			Message: fmt.Sprintf("%s is read as %s: xl's keys have no '-' and xl rejects this line", typed, under), Replacement: under})
		p.key = under
		return p.rest(under, line)
	}
	key := string(p.src[start:p.pos])
	p.key = key
	return p.rest(key, line)
}

// rest reads the operator and value of the statement of key.
func (p *parser) rest(key string, line int) error {
	p.skipSpace(false)
	appendOp := false
	switch {
	case p.peek(0) == '=':
		p.pos++
	case p.peek(0) == '+' && p.peek(1) == '=':
		p.pos += 2
		appendOp = true
	default:
		return p.codeError(fmt.Sprintf("expected '=' or '+=' after %q", key))
	}
	p.skipSpace(false)
	v, err := p.value(0)
	if err != nil {
		return err
	}
	p.skipSpace(false)
	if p.pos < len(p.src) && p.src[p.pos] != '\n' && p.src[p.pos] != ';' {
		return p.codeError(fmt.Sprintf("unexpected %q after the value of %q", p.src[p.pos], key))
	}
	return p.assign(key, v, line, appendOp)
}

func (p *parser) assign(key string, v *Value, line int, appendOp bool) error {
	c := p.cfg
	s := c.index[key]
	if s == nil {
		s = &Setting{Key: key, Value: v, Line: line, Lines: []int{line}}
		c.index[key] = s
		c.Settings = append(c.Settings, s)
		return nil
	}
	s.Lines = append(s.Lines, line)
	if !appendOp {
		c.Warnings = append(c.Warnings, Warning{File: p.name, Line: line, Key: key, Code: "repeated-key",
			Message: fmt.Sprintf("%s is set again (first on line %d): the last value wins", key, s.Line)})
		s.Value, s.Line = v, line
		return nil
	}
	switch {
	case s.Value.Kind == List && v.Kind == List:
		items := append(append([]*Value{}, s.Value.Items...), v.Items...)
		s.Value = &Value{Kind: List, Items: items, Line: s.Value.Line}
	case s.Value.Kind != List && v.Kind != List:
		s.Value = &Value{Kind: String, Text: s.Value.Text + v.Text, Line: s.Value.Line}
	default:
		return errAt(p.name, line, "%s += mixes a list and a single value: append a [ list ] to a list and a string to a string", key)
	}
	s.Line = line
	return nil
}

func (p *parser) value(depth int) (*Value, error) {
	if p.pos >= len(p.src) {
		return nil, p.errf("a value is missing at the end of the file")
	}
	line := p.line
	switch c := p.src[p.pos]; {
	case c == '[':
		if depth >= MaxDepth {
			return nil, p.errf("lists are nested deeper than %d levels", MaxDepth)
		}
		p.pos++
		v := &Value{Kind: List, Line: line}
		for {
			p.skipSpace(true)
			if p.pos >= len(p.src) {
				return nil, errAt(p.name, line, "the list opened here is not closed: add ']'")
			}
			if p.src[p.pos] == ']' {
				p.pos++
				return v, nil
			}
			item, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			v.Items = append(v.Items, item)
			p.skipSpace(true)
			switch p.peek(0) {
			case ',':
				p.pos++
			case ']':
			case 0:
				return nil, errAt(p.name, line, "the list opened here is not closed: add ']'")
			default:
				return nil, p.codeError(fmt.Sprintf("unexpected %q in a list: separate items with ','", p.src[p.pos]))
			}
		}
	case c == '"' || c == '\'':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &Value{Kind: String, Text: s, Line: line}, nil
	case c >= '0' && c <= '9' || c == '-' && p.peek(1) >= '0' && p.peek(1) <= '9':
		start := p.pos
		p.pos++
		for p.pos < len(p.src) && (isKeyChar(p.src[p.pos]) || p.src[p.pos] >= 'A' && p.src[p.pos] <= 'Z') {
			p.pos++
		}
		return &Value{Kind: Number, Text: string(p.src[start:p.pos]), Line: line}, nil
	case c == '\n' || c == ';':
		return nil, p.errf("a value is missing after '='")
	case (c == 'T' || c == 'F') && p.pythonBool():
		// xm read its configs as Python: acpi = True. xl has numbers.
		word := "True"
		v := &Value{Kind: Number, Text: "1", Line: line}
		if c == 'F' {
			word, v.Text = "False", "0"
		}
		p.pos += len(word)
		p.cfg.Warnings = append(p.cfg.Warnings, Warning{File: p.name, Line: line, Key: p.key, Code: "python-boolean",
			Message: fmt.Sprintf("%s = %s (Python, as xm read it) is read as %s: xl rejects it", p.keyName(), word, v.Text), Replacement: v.Text})
		return v, nil
	default:
		return nil, p.codeError(fmt.Sprintf("unexpected %q where a value should start", c))
	}
}

// pythonBool tells whether the value at pos is a bare True or False.
func (p *parser) pythonBool() bool {
	for _, w := range []string{"True", "False"} {
		end := p.pos + len(w)
		if end <= len(p.src) && string(p.src[p.pos:end]) == w && (end == len(p.src) || !isKeyChar(p.src[end]) && (p.src[end] < 'A' || p.src[end] > 'Z')) {
			return true
		}
	}
	return false
}

// str reads a quoted string: '...' or "..." with C escapes, or ”'...”'
// and """...""" (libvirt's triple quotes: raw, may span lines).
func (p *parser) str() (string, error) {
	q := p.src[p.pos]
	line := p.line
	if p.peek(1) == q && p.peek(2) == q {
		p.pos += 3
		start := p.pos
		for p.pos+2 < len(p.src) {
			if p.src[p.pos] == q && p.src[p.pos+1] == q && p.src[p.pos+2] == q {
				s := string(p.src[start:p.pos])
				p.pos += 3
				return s, nil
			}
			if p.src[p.pos] == '\n' {
				p.line++
			}
			p.pos++
		}
		return "", errAt(p.name, line, "the string opened with %c%c%c is not closed", q, q, q)
	}
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), nil
		case c == '\n':
			return "", errAt(p.name, line, "the string is not closed on its line: add the closing %c", q)
		case c == '\\':
			r, n, err := unescape(p.src[p.pos:])
			if err != nil {
				if p.secret(p.currentLine()) {
					return "", p.errf("a string of %s has a bad escape; the line holds a password, so it is not quoted: write \\\\ for a backslash", p.keyName())
				}
				return "", p.errf("%v", err)
			}
			b.WriteString(r)
			p.pos += n
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", errAt(p.name, line, "the string is not closed: add the closing %c", q)
}

// unescape decodes one C escape at the start of s.
func unescape(s []byte) (string, int, error) {
	if len(s) < 2 {
		return "", 0, fmt.Errorf("a backslash ends the string: write \\\\ for a backslash")
	}
	switch c := s[1]; c {
	case 'a':
		return "\a", 2, nil
	case 'b':
		return "\b", 2, nil
	case 'f':
		return "\f", 2, nil
	case 'n':
		return "\n", 2, nil
	case 'r':
		return "\r", 2, nil
	case 't':
		return "\t", 2, nil
	case 'v':
		return "\v", 2, nil
	case '\\', '\'', '"', '?':
		return string(c), 2, nil
	case 'x':
		n := 2
		for n < len(s) && n < 4 && isHexDigit(s[n]) {
			n++
		}
		if n == 2 {
			return "", 0, fmt.Errorf("\\x needs hex digits")
		}
		v, _ := strconv.ParseUint(string(s[2:n]), 16, 8)
		return string([]byte{byte(v)}), n, nil
	default:
		if c >= '0' && c <= '7' {
			n := 1
			for n < len(s) && n < 4 && s[n] >= '0' && s[n] <= '7' {
				n++
			}
			v, _ := strconv.ParseUint(string(s[1:n]), 8, 16)
			if v > 255 {
				return "", 0, fmt.Errorf("octal escape \\%s is above \\377", s[1:n])
			}
			return string([]byte{byte(v)}), n, nil
		}
		return "", 0, fmt.Errorf("unknown escape \\%c in a string: write \\\\ for a backslash", c)
	}
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// ParseInt converts an atom the way xl does (strtol with base 0): 0x10 is
// hex, a leading 0 is octal, and the whole text must be a number.
func ParseInt(s string) (int64, error) {
	t := strings.TrimLeft(s, " \t\n")
	neg := false
	if t != "" && (t[0] == '-' || t[0] == '+') {
		neg = t[0] == '-'
		t = t[1:]
	}
	base := 10
	switch {
	case len(t) > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X'):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	if t == "" || strings.ContainsAny(t, "_+-") {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	v, err := strconv.ParseInt(t, base, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number (xl reads 0x.. as hex and a leading 0 as octal)", s)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// ParseValue parses a single value in xl.cfg syntax, e.g. `"native"`,
// `0x10` or `[ "a", [ "b" ] ]`.
func ParseValue(s string) (*Value, error) {
	p := &parser{name: "value", src: []byte(s), line: 1, cfg: &Config{index: map[string]*Setting{}}}
	p.skipSpace(true)
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace(true)
	if p.pos != len(p.src) {
		return nil, p.errf("unexpected text after the value")
	}
	return v, nil
}

// String renders v in xl.cfg syntax.
func (v *Value) String() string {
	switch v.Kind {
	case Number:
		return v.Text
	case List:
		if len(v.Items) == 0 {
			return "[ ]"
		}
		parts := make([]string, len(v.Items))
		for i, it := range v.Items {
			parts[i] = it.String()
		}
		return "[ " + strings.Join(parts, ", ") + " ]"
	}
	return Quote(v.Text)
}

// Quote writes s as an xl.cfg string. It prefers plain double or single
// quotes (which libvirt's parser also reads) and uses C escapes only
// where the text needs them.
func Quote(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			plain = false
			break
		}
	}
	if plain && !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	if plain && !strings.Contains(s, `'`) {
		return `'` + s + `'`
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if c < 0x20 || c == 0x7f {
				fmt.Fprintf(&b, `\%03o`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
