#!/usr/bin/env bash
# write-package-files.sh PREFIX: writes the CMake package files and the pkg-config file for a
# Chimaera laid out under PREFIX (the staging dir, or an install prefix):
#   PREFIX/lib/cmake/Chimaera/ChimaeraConfig.cmake          (paths relative to itself)
#   PREFIX/lib/cmake/Chimaera/ChimaeraConfigVersion.cmake   (SameMajorVersion)
#   PREFIX/lib/cmake/Chimaera/ChimaeraModule.cmake          (module-building helpers, copied)
#   PREFIX/lib/pkgconfig/chimaera.pc                        (prefix=PREFIX)
# from the templates beside this script. The version comes from include/chimaera/version.h.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version_h="$here/../include/chimaera/version.h"

mkdir -p "$1"
prefix=$(cd "$1" && pwd)

version=$(sed -n 's/^#define CHI_VERSION_STRING "\([0-9][0-9.]*\)".*/\1/p' "$version_h")
abi_major=$(sed -n 's/^#define CHI_ABI_MAJOR \([0-9][0-9]*\).*/\1/p' "$version_h")
if [ -z "$version" ] || [ -z "$abi_major" ]; then
    echo "$0: no CHI_VERSION_STRING / CHI_ABI_MAJOR in $version_h" >&2
    exit 1
fi

# Escape the prefix for the right-hand side of a sed s|||: backslash, '|' and '&'.
prefix_sed=$(printf '%s' "$prefix" | sed -e 's/[\\|&]/\\&/g')

fill() { # fill TEMPLATE OUTPUT
    local tmp="$2.tmp.$$"
    sed -e "s|@PREFIX@|$prefix_sed|g" \
        -e "s|@CHI_VERSION@|$version|g" \
        -e "s|@CHI_VERSION_MAJOR@|${version%%.*}|g" \
        -e "s|@CHI_ABI_MAJOR@|$abi_major|g" \
        "$1" > "$tmp"
    if grep -q '@[A-Z_]*@' "$tmp"; then
        echo "$0: unfilled placeholder in $2: $(grep -o '@[A-Z_]*@' "$tmp" | head -1)" >&2
        rm -f "$tmp"
        exit 1
    fi
    mv -f "$tmp" "$2"
}

mkdir -p "$prefix/lib/cmake/Chimaera" "$prefix/lib/pkgconfig"
fill "$here/ChimaeraConfig.cmake.in" "$prefix/lib/cmake/Chimaera/ChimaeraConfig.cmake"
fill "$here/ChimaeraConfigVersion.cmake.in" \
     "$prefix/lib/cmake/Chimaera/ChimaeraConfigVersion.cmake"
fill "$here/chimaera.pc.in" "$prefix/lib/pkgconfig/chimaera.pc"
# Copied as is: it has no placeholders, and its own @VAR@s are for file(CONFIGURE).
cp "$here/ChimaeraModule.cmake" "$prefix/lib/cmake/Chimaera/ChimaeraModule.cmake.tmp.$$"
mv -f "$prefix/lib/cmake/Chimaera/ChimaeraModule.cmake.tmp.$$" "$prefix/lib/cmake/Chimaera/ChimaeraModule.cmake"
