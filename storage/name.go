package storage

// ValidateName checks a name given to a pool, volume, guest, restore point
// or golden image: 1-64 characters of [A-Za-z0-9._-], not starting with
// '.' or '-'. Such a name can never traverse a path, look like a flag, or
// need quoting in a shell or a config file. what names the object kind for
// the message ("volume", "pool", ...).
func ValidateName(what, name string) error {
	if name == "" {
		return Errorf(ErrInvalid, "invalid %s name %q: a name is 1 to 64 characters", what, name)
	}
	if len(name) > 64 {
		return Errorf(ErrInvalid, "invalid %s name %q: longer than 64 characters", what, name)
	}
	if name[0] == '.' || name[0] == '-' {
		return Errorf(ErrInvalid, "invalid %s name %q: must not start with %q", what, name, name[0:1])
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return Errorf(ErrInvalid, "invalid %s name %q: character %q is not allowed; use letters, digits, '.', '_' and '-'", what, name, c)
		}
	}
	return nil
}
