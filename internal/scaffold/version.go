package scaffold

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
)

// A cairnDep is how a new service's go.mod names the framework: a version
// to require and, for a checkout, the directory a replace directive points
// at (then the version is the placeholder unknownVersion).
type cairnDep struct {
	Version string
	Replace string // absolute, slash-separated; "" for none
}

// errNoCairnSource is the refusal when the binary cannot tell which Cairn a
// service should use. A version nobody can download ("latest" included,
// which go mod edit rejects and no proxy resolves in a require) would only
// fail later, in the user's go mod tidy.
var errNoCairnSource = errors.New("cannot tell which version of Cairn the new service should require")

// semverRE is a module version as go.mod takes it: vMAJOR.MINOR.PATCH with
// an optional pre-release and build suffix.
var semverRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// pseudoRE matches the tail every pseudo-version ends with: a UTC
// timestamp and a 12-digit commit hash.
var pseudoRE = regexp.MustCompile(`[-.](0\.)?[0-9]{14}-[0-9a-f]{12}(\+[0-9A-Za-z.-]+)?$`)

// released reports whether v names a released (tagged) version: semver,
// not a pseudo-version a build from a checkout is stamped with, and not
// "+dirty" (uncommitted changes) or other build metadata.
func released(v string) bool {
	return semverRE.MatchString(v) && !pseudoRE.MatchString(v) && !strings.Contains(v, "+")
}

// checkCairnVersion checks a --cairn-version: something go.mod accepts in
// a require line, so never "latest" or a branch name.
func checkCairnVersion(v string) error {
	if !semverRE.MatchString(v) {
		return fmt.Errorf("invalid --cairn-version %q: a go.mod require needs a module version such as v0.3.1 (not latest, a branch or a commit)", v)
	}
	return nil
}

// sourceFile is the path the compiler recorded for this file: where the
// code of the running binary was compiled from.
func sourceFile() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return file
}

// defaultCairn works out the framework a new service uses when neither
// --cairn-version nor --cairn-replace says: the binary's own version when
// it was installed from a released module version (go install
// github.com/cairn-es/cairn/cmd/cairn@v0.3.1), else the module download or
// checkout it was compiled from, found through src, the recorded path of a
// source file of this package. bi may be nil (no build information).
func defaultCairn(bi *debug.BuildInfo, src string) (cairnDep, error) {
	var version string
	if bi != nil && bi.Main.Path == cairnModule {
		version = bi.Main.Version
		if released(version) {
			return cairnDep{Version: version}, nil
		}
	}
	root, ok := cairnRoot(src)
	switch {
	case ok && version != "" && semverRE.MatchString(version) && filepath.Base(root) == "cairn@"+version:
		// Compiled from the module cache: go install ...@COMMIT or @main
		// downloaded this pseudo-version, so a proxy serves it.
		return cairnDep{Version: version}, nil
	case ok:
		return cairnDep{Version: unknownVersion, Replace: filepath.ToSlash(root)}, nil
	}
	shown := version
	if shown == "" {
		shown = "unknown"
	}
	return cairnDep{}, fmt.Errorf("%w: this cairn binary is not a released version (its version is %s) and the checkout it was built from is not on disk (%s).\n"+
		"Name it: --cairn-version v0.X.Y requires a released version; --cairn-replace DIR uses a checkout of %s (a replace directive)",
		errNoCairnSource, shown, sourceDirOf(src), cairnModule)
}

// sourceDirOf is what the refusal shows of the recorded source path.
func sourceDirOf(src string) string {
	if src == "" {
		return "no source path recorded"
	}
	return "source recorded as " + filepath.Dir(src)
}

// cairnRoot walks up from the source file src to the directory whose
// go.mod declares the framework's module, and reports whether it exists on
// this machine. A binary built with -trimpath records a module-relative
// path, which is not found.
func cairnRoot(src string) (string, bool) {
	if src == "" || !filepath.IsAbs(src) {
		return "", false
	}
	for dir := filepath.Dir(src); ; dir = filepath.Dir(dir) {
		if gomod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			return dir, modulePathOf(gomod) == cairnModule
		}
		if filepath.Dir(dir) == dir {
			return "", false
		}
	}
}

// resolveCairn decides the framework a new service uses, from the flags
// first.
func resolveCairn(version, replace string) (cairnDep, error) {
	if version != "" {
		if err := checkCairnVersion(version); err != nil {
			return cairnDep{}, err
		}
	}
	if replace != "" {
		root, err := checkoutAt(replace)
		if err != nil {
			return cairnDep{}, err
		}
		if version == "" {
			version = unknownVersion
		}
		return cairnDep{Version: version, Replace: root}, nil
	}
	if version != "" {
		return cairnDep{Version: version}, nil
	}
	bi, _ := debug.ReadBuildInfo()
	return defaultCairn(bi, sourceFile())
}

// checkoutAt checks that dir is a checkout of the framework and returns it
// absolute and slash-separated.
func checkoutAt(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--cairn-replace %s: %w", dir, err)
	}
	gomod, err := os.ReadFile(filepath.Join(abs, "go.mod"))
	if err != nil || modulePathOf(gomod) != cairnModule {
		return "", fmt.Errorf("--cairn-replace %s: not a checkout of %s (no go.mod declaring that module)", dir, cairnModule)
	}
	return filepath.ToSlash(abs), nil
}

// describe says, after cairn new service, which Cairn the service uses.
func (d cairnDep) describe() string {
	if d.Replace != "" {
		return "The service uses the Cairn checkout at " + d.Replace + " (a replace directive in go.mod; --cairn-version requires a release instead)."
	}
	return "The service requires Cairn " + d.Version + "."
}
