package js

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestModuleIsTheFile: what the server embeds is the package's file.
func TestModuleIsTheFile(t *testing.T) {
	b, err := os.ReadFile("liveroom.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, Module) {
		t.Fatal("Module differs from liveroom.js")
	}
}

// TestPackageJSON checks the fields a bundler and TypeScript read.
func TestPackageJSON(t *testing.T) {
	var p struct {
		Name, Version, Type, Main, Types string
		Exports                          map[string]any
		Files                            []string
	}
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.Name != "@liveroom/sdk" || p.Type != "module" || p.Main != "./liveroom.js" || p.Types != "./liveroom.d.ts" || p.Exports["."] == nil {
		t.Errorf("package.json: %+v", p)
	}
	// The version is the one the module reports.
	if !bytes.Contains(Module, []byte(`export const VERSION = '`+p.Version+`';`)) {
		t.Errorf("liveroom.js does not export VERSION %q", p.Version)
	}
}

// TestNpmPack packs the package as npm would publish it and checks the
// tarball holds the module, its types, the README and package.json, and
// nothing else (no Go file).
func TestNpmPack(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not on PATH: cannot check `npm pack` (install Node.js and npm to run this test)")
	}
	dir := t.TempDir()
	cmd := exec.Command(npm, "pack", "--json", "--pack-destination", dir)
	cmd.Env = append(os.Environ(), "npm_config_cache="+filepath.Join(dir, "cache"), "npm_config_update_notifier=false", "npm_config_offline=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("npm pack: %v\n%s", err, stderr.String())
	}
	var packed []struct{ Filename string }
	if err := json.Unmarshal(out, &packed); err != nil || len(packed) != 1 {
		t.Fatalf("npm pack --json answered %s (%v)", out, err)
	}
	tgz := filepath.Join(dir, filepath.Base(packed[0].Filename))
	files := untar(t, tgz, filepath.Join(dir, "app", "node_modules", "@liveroom", "sdk"))
	slices.Sort(files)
	if want := []string{"README.md", "liveroom.d.ts", "liveroom.js", "package.json"}; !slices.Equal(files, want) {
		t.Errorf("tarball %s holds %v, want %v", filepath.Base(tgz), files, want)
	}

	// The unpacked package resolves by its name from an app and exports
	// what the README promises.
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: cannot import the packed module")
	}
	app := filepath.Join(dir, "app")
	script := `import * as sdk from '@liveroom/sdk';
const want = ['connect', 'Room', 'ApiError', 'request', 'requestJSON', 'sendMessage', 'listSessions', 'getReplay', 'dispatch', 'gatewayURL', 'backoffDelay', 'describeError', 'jwtClaims', 'uuid4', 'BoundedSet', 'VERSION'];
const missing = want.filter((k) => !(k in sdk));
if (missing.length) throw new Error('missing exports: ' + missing);
const check = (got, want, what) => { if (got !== want) throw new Error(what + ': ' + got + ', want ' + want); };
const p = { base_ms: 500, max_ms: 15000, jitter: 0.5 };
check(sdk.backoffDelay(p, 0, 0), 500, 'first delay, no jitter');
check(sdk.backoffDelay(p, 1, 0.5), 750, 'second delay, half jitter');
check(sdk.backoffDelay(p, 30, 0), 15000, 'capped delay');
check(sdk.gatewayURL('ws://0.0.0.0:9001/v1/ws', new URL('https://h.test:8443/room/x')), 'wss://h.test:9001/v1/ws', 'wildcard host');
check(sdk.gatewayURL('/v1/ws', new URL('http://h.test:8080/')), 'ws://h.test:8080/v1/ws', 'path');
check(new sdk.ApiError(429, { error: { code: 'rate_limited', message: 'm', retry_after_ms: 2000 } }).retryAfterMs, 2000, 'retryAfterMs');
let threw = false;
try { sdk.connect({ room: 'bad.room', token: 't' }); } catch (e) { threw = e instanceof TypeError; }
check(threw, true, 'connect to a bad room id throws');
threw = false;
try { new sdk.Room({ room: 'ok', token: 't', since: -1 }); } catch (e) { threw = e instanceof TypeError; }
check(threw, true, 'a negative since throws');
console.log(JSON.stringify({ version: sdk.VERSION, uuid: sdk.uuid4() }));
`
	if err := os.WriteFile(filepath.Join(app, "smoke.mjs"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	run := exec.Command(node, "smoke.mjs")
	run.Dir = app
	got, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("node smoke.mjs: %v\n%s", err, got)
	}
	var res struct{ Version, UUID string }
	if err := json.Unmarshal(bytes.TrimSpace(got), &res); err != nil || res.Version == "" || len(res.UUID) != 36 {
		t.Errorf("node smoke.mjs printed %s (%v)", got, err)
	}
}

// untar unpacks an npm tarball's package/ into dst and lists its files.
func untar(t *testing.T, tgz, dst string) []string {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name, ok := strings.CutPrefix(h.Name, "package/")
		if !ok || h.Typeflag != tar.TypeReg || strings.Contains(name, "..") {
			t.Fatalf("unexpected tar entry %q", h.Name)
		}
		names = append(names, name)
		p := filepath.Join(dst, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return names
}
