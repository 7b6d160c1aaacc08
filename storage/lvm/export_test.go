package lvm

var ParseDMReply = parseDMReply
