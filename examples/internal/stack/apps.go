package stack

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// EnvRequire turns a missing toolchain (node and the npm packages, Next.js's
// build, Django and python3-stripe, Chromium) from a skip into a failure; CI
// sets it.
const EnvRequire = "TOLLGATE_TEST_REQUIRE_EXAMPLES"

// App is one example app: where it lives, how it starts, what it needs.
type App struct {
	Name string
	Dir  string // under examples/
	// Webhook is the source file that verifies forwarded events, the only
	// one that may import the Stripe library.
	Webhook string
	// StreamTrailer: /api/stream declares its units in a trailer (else in
	// the header, before the body).
	StreamTrailer bool
	command       func(port int) *exec.Cmd
	env           []string
	missing       func() string // why the app cannot run here, "" when it can
}

// Apps are the three examples.
func Apps() []App { return []App{Express(), NextJS(), Django()} }

func Express() App {
	dir := filepath.Join(Dir(), "express")
	return App{Name: "express", Dir: dir, Webhook: "webhooks.js", StreamTrailer: true,
		command: func(int) *exec.Cmd { return command(dir, "node", "server.js") },
		missing: func() string { return npmInstalled(dir) }}
}

func NextJS() App {
	dir := filepath.Join(Dir(), "nextjs")
	return App{Name: "nextjs", Dir: dir,
		Webhook: "app/webhooks/tollgate/route.js",
		command: func(port int) *exec.Cmd {
			return command(dir, "node", "node_modules/next/dist/bin/next", "start", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		},
		env: []string{"NEXT_TELEMETRY_DISABLED=1"},
		missing: func() string {
			if why := npmInstalled(dir); why != "" {
				return why
			}
			return nextBuilt(dir)
		}}
}

func Django() App {
	dir := filepath.Join(Dir(), "django")
	python := Python()
	return App{Name: "django", Dir: dir,
		Webhook: "exampleapp/webhooks.py",
		command: func(port int) *exec.Cmd {
			return command(dir, python, "manage.py", "runserver", fmt.Sprintf("127.0.0.1:%d", port), "--noreload")
		},
		env: []string{"DJANGO_SECRET_KEY=example-tests-only", "PYTHONUNBUFFERED=1"},
		missing: func() string {
			if python == "" {
				return "no python3 with Django and the Stripe library: apt-get install python3-django python3-stripe"
			}
			return ""
		}}
}

func command(dir, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = dir
	return c
}

// SourceFiles lists the app's own source files (not its dependencies or
// build output), relative to Dir.
func (a App) SourceFiles() ([]string, error) {
	var out []string
	err := filepath.WalkDir(a.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", ".next", "__pycache__", "data":
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".py", ".html":
			rel, _ := filepath.Rel(a.Dir, path)
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

// require skips or fails the test when the app cannot run here.
func (a App) require(t testing.TB) {
	t.Helper()
	if why := a.missing(); why != "" {
		Missing(t, a.Name+": "+why)
	}
}

// Missing skips the test for a missing tool, or fails it under EnvRequire.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s (and %s=1)", why, EnvRequire)
	}
	t.Skip(why)
}

func npmInstalled(dir string) string {
	if _, err := exec.LookPath("node"); err != nil {
		return "node is not on PATH"
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err != nil {
		return "no node_modules: run npm ci in " + dir
	}
	return ""
}

// nextBuilt checks that .next holds a build newer than every source file,
// so the test never runs yesterday's code.
func nextBuilt(dir string) string {
	id, err := os.Stat(filepath.Join(dir, ".next", "BUILD_ID"))
	if err != nil {
		return "no Next.js build: run npm run build in " + dir
	}
	stale := ""
	for _, sub := range []string{"app", "lib", "next.config.mjs", "package-lock.json", "node_modules/.package-lock.json"} {
		filepath.WalkDir(filepath.Join(dir, sub), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if info, err := d.Info(); err == nil && info.ModTime().After(id.ModTime()) {
					stale = path
				}
			}
			return nil
		})
	}
	if stale != "" {
		return stale + " is newer than the Next.js build: run npm run build in " + dir
	}
	return ""
}

// Python is the first python3 that imports Django and the Stripe library
// (Debian's python3-django and python3-stripe live in /usr/bin/python3's
// path, which a pyenv or venv python3 earlier on PATH does not see), or "".
var Python = sync.OnceValue(func() string {
	for _, p := range []string{os.Getenv("TOLLGATE_PYTHON"), "/usr/bin/python3", "python3"} {
		if p == "" {
			continue
		}
		if exec.Command(p, "-c", "import django, stripe").Run() == nil {
			return p
		}
	}
	return ""
})
