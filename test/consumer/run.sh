#!/usr/bin/env bash
# The consumer test: pack the package, install the tarball into a fresh
# project outside the repository, and use it as a user would: plain Node on
# an ESM script, TypeScript with node16 and bundler resolution on the
# package's own declarations, and vitest with no configuration. Dependencies
# come from npm's cache when `npm ci` already filled it (--prefer-offline).
# Then the browser example is built from the installed package and tested in
# headless Chromium (examples/browser/test-page.mjs); set SCREENSHOT=file
# to keep a screenshot of the page.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
here="$repo/test/consumer"
shot="${SCREENSHOT:+$(realpath -m "$SCREENSHOT")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$repo"
tarball="$work/$(npm pack --silent --pack-destination "$work" | tail -n 1)"
echo "consumer: packed $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"
ver() { node -p "require('$repo/package.json').devDependencies['$1']"; }
cd "$work"
cat > package.json <<JSON
{ "name": "consumer", "private": true, "type": "module" }
JSON
cp "$here/index.mjs" "$here/check.ts" "$here/smoke.test.ts" "$here/tsconfig.node16.json" "$here/tsconfig.bundler.json" .
mkdir browser && cp -r "$repo"/examples/browser/* browser/
t0=$SECONDS
npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tarball" "fast-check@$(ver fast-check)" \
  "typescript@$(ver typescript)" "vitest@$(ver vitest)" "esbuild@$(ver esbuild)" "puppeteer-core@$(ver puppeteer-core)"
echo "consumer: installed in $((SECONDS - t0)) s"
echo "consumer: plain node"
node index.mjs
# Each config twice: as most projects run it (skipLibCheck), which must be
# clean, and with every declaration file checked, where tfjs's own
# declarations have errors under TypeScript 5.9 that are not ours: any error
# in this package's declarations or in check.ts fails.
for mode in node16 bundler; do
  echo "consumer: tsc $mode"
  npx tsc -p "tsconfig.$mode.json" --skipLibCheck
  if ! npx tsc -p "tsconfig.$mode.json" --pretty false > "tsc-$mode.log"; then
    if grep -v '^node_modules/@tensorflow/' "tsc-$mode.log" | grep -E '^[^ ]' ; then
      echo "consumer: tsc $mode: errors in sparsetune's declarations or check.ts"; exit 1
    fi
  fi
done
echo "consumer: vitest"
npx vitest run --reporter=dot
echo "consumer: browser"
(cd browser && node test-page.mjs ${shot:+"$shot"})
echo "consumer: all passed"
