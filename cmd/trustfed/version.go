package main

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// buildVersion is the version the server reports.
func buildVersion() string { return version }
