// Package browser drives the example apps' billing pages in a real headless
// Chromium (Debian's chromium package, through chromedp). It is a module of
// its own so that tollgate's module never depends on a browser driver.
package browser
