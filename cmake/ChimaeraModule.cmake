# ChimaeraModule.cmake: CMake helpers for building Chimaera modules (ChiMods) and installing a
# module repo as a package. Included by ChimaeraConfig.cmake, so find_package(Chimaera CONFIG)
# provides them. A repo made by chi_make_repo uses them like this:
#
#   find_package(Chimaera CONFIG REQUIRED)
#   chimaera_repo(example)                       # the namespace of what follows
#   add_subdirectory(compressor)                 # add_chimaera_module(compressor SOURCES ...)
#   chimaera_install_repo()                      # ExampleConfig.cmake, targets, pkg-config
#
# add_chimaera_module(<name> SOURCES <file>... [NAMESPACE <ns>] [INCLUDE_DIR <dir>]
#                     [LINK_LIBRARIES <lib>...] [CLIENT_SOURCES <file>...])
#   The runtime library lib<ns>_<name>.so, which the runtime loads when a client registers the
#   module "<ns>_<name>" (built into ${CHIMAERA_MODULE_OUTPUT_DIR}, installed into
#   ${CHIMAERA_MODULE_INSTALL_DIR}), and the client target <ns>::<name>_client: the headers in
#   INCLUDE_DIR (default include/), linking chimaera::chimaera. C++ sources (.cc, .cpp, .cxx)
#   are compiled as C++17 (the C++ module layer, chimaera/api/chimaera_module.h, needs it), and
#   then the client target requires C++17 of its users too. With CLIENT_SOURCES the client
#   target is a static library of those files (the seed's src/<name>_client.cc) rather than
#   headers only.
# add_chimaera_swift_module(<name> [NAMESPACE <ns>] [PACKAGE_DIR <dir>] [INCLUDE_DIR <dir>]
#                           [SWIFT_FLAGS <flag>...])
#   The same for a module written in Swift: SwiftPM builds the package in PACKAGE_DIR (default
#   the current source dir), whose dynamic product must be named <ns>_<name>.
# chimaera_install_repo([NAMESPACE <ns>] [VERSION <version>])
#   Installs <Ns>Config.cmake (<Ns> is the namespace in UpperCamelCase: hello_example ->
#   HelloExample), its version file and the exported client targets, so that another project
#   writes find_package(<Ns> CONFIG REQUIRED) and links <ns>::<name>_client. Sets
#   <NS>_MODULES and <NS>_MODULE_DIR there.
#
# Every installed path is relative to the install prefix, so a copied prefix still works.

include_guard(GLOBAL)
include(CMakePackageConfigHelpers)

set(CHIMAERA_MODULE_INSTALL_DIR "lib/chimaera" CACHE STRING
    "Where module runtime libraries are installed (relative to the prefix: the runtime's built-in module directory when the prefixes match)")
option(CHIMAERA_REFRESH_AT_CONFIGURE
  "Run chi_refresh_repo when configuring a kit-made C++ module, and again when its tasks header changes (its method table names the fields its Serialize functions name)" ON)
# The kit beside this file's prefix: <prefix>/lib/cmake/Chimaera -> <prefix>/bin.
get_filename_component(_CHIMAERA_REFRESH_REPO "${CMAKE_CURRENT_LIST_DIR}/../../../bin/chi_refresh_repo" ABSOLUTE)
set(CHIMAERA_MODULE_OUTPUT_DIR "${CMAKE_BINARY_DIR}/chimaera_modules" CACHE PATH
    "Where module runtime libraries are built (point CHI_MODULE_PATH here to use them uninstalled)")

# Sets the namespace for the modules of this directory and below.
function(chimaera_repo ns)
  if(NOT ns MATCHES "^[a-z][a-z0-9_]*$")
    message(FATAL_ERROR "chimaera_repo: bad namespace \"${ns}\": use lower_snake_case")
  endif()
  set(CHIMAERA_REPO_NAMESPACE "${ns}" PARENT_SCOPE)
endfunction()

# <ns> from NAMESPACE or chimaera_repo(), into ${out}.
function(_chimaera_namespace given out)
  set(ns "${given}")
  if(ns STREQUAL "")
    set(ns "${CHIMAERA_REPO_NAMESPACE}")
  endif()
  if(ns STREQUAL "")
    message(FATAL_ERROR "no module namespace: call chimaera_repo(<ns>) first or pass NAMESPACE <ns>")
  endif()
  set(${out} "${ns}" PARENT_SCOPE)
endfunction()

# hello_example -> HelloExample: the package name of a namespace.
function(_chimaera_package_name ns out)
  string(REPLACE "_" ";" words "${ns}")
  set(name "")
  foreach(w IN LISTS words)
    string(SUBSTRING "${w}" 0 1 head)
    string(SUBSTRING "${w}" 1 -1 tail)
    string(TOUPPER "${head}" head)
    string(APPEND name "${head}${tail}")
  endforeach()
  set(${out} "${name}" PARENT_SCOPE)
endfunction()

# The client target <ns>::<name>_client, its installed headers and its pkg-config file.
# Optional arguments: "CXX" (the headers need C++17), then the client's own sources.
function(_chimaera_client_target name ns inc)
  _chimaera_package_name("${ns}" pkg)
  set(client "${ns}_${name}_client")
  set(cxx OFF)
  set(srcs ${ARGN})
  if(srcs)
    list(GET srcs 0 first)
    if(first STREQUAL "CXX")
      set(cxx ON)
      list(REMOVE_AT srcs 0)
    endif()
  endif()
  if(srcs)
    add_library(${client} STATIC ${srcs})
    set_target_properties(${client} PROPERTIES POSITION_INDEPENDENT_CODE ON
      CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
    target_include_directories(${client} PUBLIC "$<BUILD_INTERFACE:${inc}>" "$<INSTALL_INTERFACE:include>")
    target_link_libraries(${client} PUBLIC chimaera::chimaera)
  else()
    add_library(${client} INTERFACE)
    target_include_directories(${client} INTERFACE "$<BUILD_INTERFACE:${inc}>" "$<INSTALL_INTERFACE:include>")
    target_link_libraries(${client} INTERFACE chimaera::chimaera)
  endif()
  add_library(${ns}::${name}_client ALIAS ${client})
  set_target_properties(${client} PROPERTIES EXPORT_NAME "${name}_client")
  if(cxx)
    if(srcs)
      target_compile_features(${client} PUBLIC cxx_std_17)
    else()
      target_compile_features(${client} INTERFACE cxx_std_17)
    endif()
  endif()
  install(TARGETS ${client} EXPORT ${pkg}Targets ARCHIVE DESTINATION lib)
  install(DIRECTORY "${inc}/" DESTINATION include FILES_MATCHING PATTERN "*.h")

  set(CHI_PC_NAME "${ns}_${name}")
  set(CHI_PC_VERSION "${PROJECT_VERSION}")
  if(CHI_PC_VERSION STREQUAL "")
    set(CHI_PC_VERSION "0")
  endif()
  # ${pcfiledir}: the .pc file's own directory, so the prefix can move.
  file(CONFIGURE OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/${ns}_${name}.pc" @ONLY CONTENT
"prefix=\${pcfiledir}/../..
includedir=\${prefix}/include
moduledir=\${prefix}/@CHIMAERA_MODULE_INSTALL_DIR@

Name: @CHI_PC_NAME@
Description: Client API of the Chimaera module @CHI_PC_NAME@
Version: @CHI_PC_VERSION@
Requires: chimaera
Cflags: -I\${includedir}
")
  install(FILES "${CMAKE_CURRENT_BINARY_DIR}/${ns}_${name}.pc" DESTINATION lib/pkgconfig)
  set_property(GLOBAL APPEND PROPERTY CHIMAERA_REPO_MODULES_${ns} "${name}")
endfunction()

function(add_chimaera_module name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "NAMESPACE;INCLUDE_DIR" "SOURCES;LINK_LIBRARIES;CLIENT_SOURCES")
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "add_chimaera_module(${name}): no SOURCES")
  endif()
  _chimaera_namespace("${ARG_NAMESPACE}" ns)
  set(inc "${ARG_INCLUDE_DIR}")
  if(inc STREQUAL "")
    set(inc "${CMAKE_CURRENT_SOURCE_DIR}/include")
  endif()
  get_filename_component(inc "${inc}" ABSOLUTE)
  set(lib "${ns}_${name}")
  # MODULE: a plugin the runtime dlopens by name, never linked against.
  add_library(${lib} MODULE ${ARG_SOURCES})
  set_target_properties(${lib} PROPERTIES
    PREFIX "lib" OUTPUT_NAME "${lib}" SUFFIX ".so"
    C_STANDARD 11 C_STANDARD_REQUIRED ON CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON
    C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${CHIMAERA_MODULE_OUTPUT_DIR}")
  target_include_directories(${lib} PRIVATE "${inc}" "${CMAKE_CURRENT_SOURCE_DIR}/src")
  target_link_libraries(${lib} PRIVATE chimaera::chimaera ${ARG_LINK_LIBRARIES})
  # A missing symbol is a link error here rather than a load error in the runtime.
  target_link_options(${lib} PRIVATE "LINKER:--no-undefined")
  install(TARGETS ${lib} LIBRARY DESTINATION "${CHIMAERA_MODULE_INSTALL_DIR}")
  set(lang "")
  foreach(src IN LISTS ARG_SOURCES ARG_CLIENT_SOURCES)
    if(src MATCHES "\\.(cc|cpp|cxx)$")
      set(lang "CXX")
    endif()
  endforeach()
  if(lang STREQUAL "CXX")
    _chimaera_refresh_cpp("${name}" "${inc}")
  endif()
  _chimaera_client_target("${name}" "${ns}" "${inc}" ${lang} ${ARG_CLIENT_SOURCES})
endfunction()

# A kit-made C++ module (chi_make_mod --lang cpp) generates its method table from its task
# structs' Serialize functions: refresh the repo now, and configure again when they change.
function(_chimaera_refresh_cpp name inc)
  get_filename_component(repo "${CMAKE_CURRENT_SOURCE_DIR}" DIRECTORY)
  set(tasks "${inc}/${name}/${name}_tasks.h")
  if(NOT CHIMAERA_REFRESH_AT_CONFIGURE OR NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/chimaera_mod.yaml"
     OR NOT EXISTS "${repo}/chimaera_repo.yaml" OR NOT EXISTS "${tasks}")
    return()
  endif()
  if(NOT EXISTS "${_CHIMAERA_REFRESH_REPO}")
    message(WARNING "${_CHIMAERA_REFRESH_REPO} is missing: run chi_refresh_repo ${repo} by hand after editing ${tasks}")
    return()
  endif()
  execute_process(COMMAND "${_CHIMAERA_REFRESH_REPO}" "${repo}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE written ERROR_VARIABLE said)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "chi_refresh_repo ${repo} failed:\n${said}")
  endif()
  if(said MATCHES "warning:")
    message(WARNING "${said}")
  elseif(NOT written STREQUAL "")
    message(STATUS "chi_refresh_repo ${repo} updated:\n${written}")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${tasks}"
    "${inc}/${name}/${name}_methods.yaml")
endfunction()

function(add_chimaera_swift_module name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "NAMESPACE;PACKAGE_DIR;INCLUDE_DIR" "SWIFT_FLAGS")
  _chimaera_namespace("${ARG_NAMESPACE}" ns)
  set(pkgdir "${ARG_PACKAGE_DIR}")
  if(pkgdir STREQUAL "")
    set(pkgdir "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  get_filename_component(pkgdir "${pkgdir}" ABSOLUTE)
  set(inc "${ARG_INCLUDE_DIR}")
  if(inc STREQUAL "")
    set(inc "${pkgdir}/include")
  endif()
  get_filename_component(inc "${inc}" ABSOLUTE)
  find_program(CHIMAERA_SWIFT swift REQUIRED)
  set(lib "${ns}_${name}")
  set(out "${CHIMAERA_MODULE_OUTPUT_DIR}/lib${lib}.so")
  set(scratch "${CMAKE_CURRENT_BINARY_DIR}/swiftpm")
  get_target_property(chi_inc chimaera::chimaera INTERFACE_INCLUDE_DIRECTORIES)
  get_target_property(chi_lib chimaera::chimaera IMPORTED_LOCATION)
  get_filename_component(chi_libdir "${chi_lib}" DIRECTORY)
  # Export only the entry point: the module carries its own static Swift runtime, which must
  # not interpose on anything else in the process.
  set(map "${CMAKE_CURRENT_BINARY_DIR}/${lib}.map")
  file(WRITE "${map}.in" "{ global: chi_module_entry; local: *; };\n")
  configure_file("${map}.in" "${map}" COPYONLY)
  file(GLOB_RECURSE deps CONFIGURE_DEPENDS "${pkgdir}/Package.swift" "${pkgdir}/Sources/*" "${inc}/*.h")
  add_custom_command(OUTPUT "${out}"
    COMMAND "${CHIMAERA_SWIFT}" build -c release --package-path "${pkgdir}" --scratch-path "${scratch}"
            -Xswiftc -static-stdlib -Xcc "-I${chi_inc}" -Xlinker "-L${chi_libdir}"
            -Xlinker "--version-script=${map}" -Xlinker "-soname=lib${lib}.so" ${ARG_SWIFT_FLAGS}
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${CHIMAERA_MODULE_OUTPUT_DIR}"
    COMMAND "${CMAKE_COMMAND}" -E copy "${scratch}/release/lib${lib}.so" "${out}"
    DEPENDS ${deps} "${map}"
    COMMENT "Building the Swift module lib${lib}.so with SwiftPM"
    VERBATIM)
  add_custom_target(${lib} ALL DEPENDS "${out}")
  install(FILES "${out}" DESTINATION "${CHIMAERA_MODULE_INSTALL_DIR}")
  _chimaera_client_target("${name}" "${ns}" "${inc}")
endfunction()

function(chimaera_install_repo)
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "NAMESPACE;VERSION" "")
  _chimaera_namespace("${ARG_NAMESPACE}" ns)
  _chimaera_package_name("${ns}" pkg)
  set(version "${ARG_VERSION}")
  if(version STREQUAL "")
    set(version "${PROJECT_VERSION}")
  endif()
  if(version STREQUAL "")
    set(version "0.0.0")
  endif()
  get_property(CHI_REPO_MODULES GLOBAL PROPERTY CHIMAERA_REPO_MODULES_${ns})
  set(dest "lib/cmake/${pkg}")
  if(CHI_REPO_MODULES)
    install(EXPORT ${pkg}Targets NAMESPACE ${ns}:: DESTINATION "${dest}" FILE "${pkg}Targets.cmake")
    set(CHI_REPO_INCLUDE_TARGETS "include(\"\${CMAKE_CURRENT_LIST_DIR}/${pkg}Targets.cmake\")")
  endif()
  string(TOUPPER "${ns}" CHI_REPO_NS_UPPER)
  set(CHI_REPO_NS "${ns}")
  set(CHI_REPO_PKG "${pkg}")
  file(CONFIGURE OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/${pkg}Config.cmake" @ONLY CONTENT
"# @CHI_REPO_PKG@Config.cmake: find_package(@CHI_REPO_PKG@ CONFIG) for the \"@CHI_REPO_NS@\" Chimaera module
# repo, written by chimaera_install_repo. Targets: @CHI_REPO_NS@::<module>_client for each module
# (its client headers, linking chimaera::chimaera). @CHI_REPO_NS_UPPER@_MODULES names the modules;
# @CHI_REPO_NS_UPPER@_MODULE_DIR holds their runtime libraries (lib@CHI_REPO_NS@_<module>.so), for
# CHI_MODULE_PATH or runtime.module_path when it is not the runtime's own module directory.
include(CMakeFindDependencyMacro)
find_dependency(Chimaera CONFIG)
get_filename_component(_chi_repo_prefix \"\${CMAKE_CURRENT_LIST_DIR}/../../..\" ABSOLUTE)
@CHI_REPO_INCLUDE_TARGETS@
set(@CHI_REPO_NS_UPPER@_MODULES @CHI_REPO_MODULES@)
set(@CHI_REPO_NS_UPPER@_MODULE_DIR \"\${_chi_repo_prefix}/@CHIMAERA_MODULE_INSTALL_DIR@\")
unset(_chi_repo_prefix)
")
  write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/${pkg}ConfigVersion.cmake"
    VERSION "${version}" COMPATIBILITY SameMajorVersion)
  install(FILES "${CMAKE_CURRENT_BINARY_DIR}/${pkg}Config.cmake"
                "${CMAKE_CURRENT_BINARY_DIR}/${pkg}ConfigVersion.cmake"
          DESTINATION "${dest}")
endfunction()
