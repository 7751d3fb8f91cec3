/* Chimaera ABI version. A module or binding built for another major is refused. */
#ifndef CHIMAERA_VERSION_H
#define CHIMAERA_VERSION_H

#define CHI_ABI_MAJOR 1
#define CHI_ABI_MINOR 8
/** Packs a major/minor pair the way chi_abi_version() returns it. */
#define CHI_ABI_PACK(major, minor) (((major) << 16) | (minor))

#define CHI_VERSION_STRING "0.1.0"

#endif
