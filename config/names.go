package config

// ValidName reports whether s may name a plan, a feature or a meter:
// letters, digits, '_', '-' or '.', starting with a letter or digit, at
// most 100 characters (what validation requires of the config's own
// names, for operator input such as tollgate grant -features).
func ValidName(s string) bool { return identRe.MatchString(s) }
