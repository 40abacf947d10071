#!/usr/bin/env bash
# Builds the Debian package from a finished build folder, unpacks it into a temporary root, and
# checks that it works there: the programs run from the unpacked tree, the desktop file and
# AppStream metainfo validate, and lintian finds no errors or warnings. Also installs the build to
# a temporary prefix with `cmake --install`. Usage: packaging/check-package.sh BUILD_DIR
set -euo pipefail

build=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== cpack -G DEB"
(cd "$build" && cpack -G DEB -B "$work/out" > "$work/cpack.log") || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/out/*.deb)
echo "$(basename "$deb")"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for needed in libtorch libqt6widgets6 libqt6charts6 libopencv libopenblas0-pthread; do
    case "$depends" in *"$needed"*) ;; *) echo "the package does not depend on $needed"; exit 1 ;; esac
done

echo "== the unpacked tree"
dpkg-deb -x "$deb" "$work/root"
root="$work/root"
for file in usr/bin/flowscope usr/bin/flowscope-cli usr/bin/flowscope-bench \
            usr/share/applications/org.flowscope.FlowScope.desktop \
            usr/share/metainfo/org.flowscope.FlowScope.metainfo.xml \
            usr/share/icons/hicolor/scalable/apps/org.flowscope.FlowScope.svg \
            usr/share/icons/hicolor/48x48/apps/org.flowscope.FlowScope.png \
            usr/share/man/man1/flowscope-cli.1.gz usr/share/doc/flowscope/copyright; do
    [[ -e "$root/$file" ]] || { echo "missing from the package: /$file"; exit 1; }
done
"$root/usr/bin/flowscope-cli" --version
"$root/usr/bin/flowscope-cli" sample --model gmm:8gaussians --steps 4 --batch 64 --out "$work/scatter.png" --json \
    > "$work/sample.json"
grep -q '"nfe":4' "$work/sample.json" || { cat "$work/sample.json"; exit 1; }
[[ -s "$work/scatter.png" ]]

echo "== desktop-file-validate, appstreamcli"
desktop-file-validate "$root/usr/share/applications/org.flowscope.FlowScope.desktop"
appstreamcli validate --no-net "$root/usr/share/metainfo/org.flowscope.FlowScope.metainfo.xml"

echo "== lintian"
lintian --fail-on error,warning --suppress-tags-from-file /dev/null "$deb"

echo "== cmake --install to a prefix"
cmake --install "$build" --prefix "$work/prefix" > /dev/null
"$work/prefix/bin/flowscope-cli" --version
echo "package checks passed"
