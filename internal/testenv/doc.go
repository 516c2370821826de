// Package testenv runs the real tools nixpushd's integration tests need —
// Nix (to build closures, make signing keys and act as the cache's client)
// and MinIO (the S3 server) — never mocks.
//
// Ground rules, shared by every helper:
//   - A missing tool skips the test, unless CI=true (any strconv.ParseBool
//     true value): then it fails, so CI can never go green by skipping.
//     An explicit MINIO_BIN/MC_BIN/NIX_BIN_DIR that points nowhere always fails.
//   - Binaries: MinIO and mc come from $MINIO_BIN / $MC_BIN, then $PATH, then
//     $(go env GOPATH)/bin. Nix comes from $NIX_BIN_DIR, then $PATH, then the
//     usual profile directories.
//   - Network traffic goes only to 127.0.0.1, on random free ports. All state
//     lives in temp dirs. Processes are stopped and waited for at cleanup, and
//     die with the test binary (Pdeathsig) if it crashes.
//   - Helpers that take a testing.TB may call t.Fatal/t.Skip, so call them from
//     the test's own goroutine.
//
// Environment and rules (this file):
//   - CI reports whether CI=true is set; ErrNotInstalled (IsNotInstalled)
//     marks a tool that is absent rather than broken.
//   - Unavailable / Require / LookPath: the one rule for anything a test
//     needs from the machine (tools, libraries, prepared roots): skip, or
//     fail under CI. Tests outside testenv use these rather than t.Skip.
//
// Nix (nix.go):
//   - RequireNix: are the Nix binaries and /nix/store usable?
//   - NixEnv: NIX_CONFIG entries that make Nix work here as root (no build
//     users, no sandbox, nix-command on, no substituters, no narinfo caching).
//   - NixCmd / Nix / RunNix: run a Nix binary with that environment and a
//     private XDG_CACHE_HOME (so Nix's on-disk narinfo cache never leaks
//     answers between calls); Nix fails the test on error, RunNix does not.
//   - BuildExpr: nix-build an expression, return its out paths.
//   - BuildClosure: nix-build a fresh leaf <- mid <- top closure (plus optional
//     extra leaves) covering every NAR node type, seeded so it is new each run.
//   - GenerateKey: `nix key generate-secret` + `convert-secret-to-public`.
//   - NewClientStore: an empty chroot store (a temp dir) to copy into.
//   - CopyFrom / CopyFromInto: `nix copy --from URL` into a chroot store with
//     only the given keys trusted and signatures required.
//   - Substitute / SubstituteInto: `nix-store -r` with the cache as the only
//     substituter, i.e. the way a real machine consumes the cache.
//   - VerifyStore / VerifyCache: `nix store verify --sigs-needed 1` on a chroot
//     store or directly on a binary cache URL.
//
// MinIO (minio.go):
//   - HaveMinIO / RequireMinIO: are the minio and mc binaries available?
//   - StartMinIO (tests) / StartMinIOMain (TestMain) / RunWithMinIO: start a
//     server on 127.0.0.1:<random port> with a temp data dir, wait for
//     /minio/health/ready plus real S3 and IAM answers. Stop (SIGTERM) and
//     Kill (SIGKILL) keep the data, Restart brings it back on the same port,
//     Freeze/Thaw (SIGSTOP/SIGCONT) make it hang; Running reports state.
//   - MC / RunMC: run mc against the server (alias MCAlias, root) with a
//     private MC_CONFIG_DIR and HOME, so ~/.mc is never touched.
//   - NewCache: a bucket set up as in the seed guides (mb, writer user,
//     least-privilege policy without DeleteObject, anonymous download) and
//     nix-cache-info deliberately NOT written.
//   - Objects / Get / Has / RootClient / Client: minio-go access (also as
//     Cache methods, Cache.Client being the writer user).
//   - Cache.UploadDir: upload a `nix copy --to file://` directory as the writer.
package testenv
