// Package browser starts headless Chromium for the tests that look at
// Schakel's web pages the way an operator does: the Twiin Monitor and the
// validation kit's HTML report.
package browser

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// Path is where the Debian package `chromium` installs the browser.
const Path = "/usr/bin/chromium"

// RequireEnv, set to 1, turns a missing browser from a skip into a failure
// (.ci/run sets it, having installed Chromium).
const RequireEnv = "SCHAKEL_REQUIRE_BROWSER"

// ScreenshotsEnv, set to 1, has the tests write their screenshots into
// docs/img instead of the test's temporary directory.
const ScreenshotsEnv = "SCHAKEL_UPDATE_SCREENSHOTS"

// New starts a fresh headless Chromium (its own profile, 1280×800) and
// returns a context for chromedp.Run; it is stopped when the test ends.
func New(t testing.TB) context.Context {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("headless Chromium is required (%s=1) but %s is missing: apt-get install chromium", RequireEnv, Path)
		}
		t.Skipf("headless Chromium not found at %s: install the Debian package chromium to run this test (%s=1 makes this a failure)", Path, RequireEnv)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", Path, err)
	}
	return ctx
}

// Screenshot captures the viewport into docs/img/name (with
// SCHAKEL_UPDATE_SCREENSHOTS=1) or the test's temporary directory, and
// returns the file written.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := t.TempDir()
	if os.Getenv(ScreenshotsEnv) == "1" {
		dir = filepath.Join(repoRoot(t), "docs", "img")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// repoRoot is the directory of go.mod above the test's package.
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("no go.mod above the test's directory")
	return ""
}
