# Chimaera build: SwiftPM builds libchimaera.so, cc builds the C parts against it.
# Everything lands in $(STAGE) laid out like an install prefix; `make install` copies it.
#
#   make demo      set up, build, start a runtime, run the client example, stop it
#   make test      set up, build, run every test
#   make install PREFIX=/usr/local
#   make sanitize        the library, modules and tool with ASan + UBSan, staged in build-san/
#   make sanitize-test   the C ABI tests (and Tests/capi/hostile) against that build
#   make fuzz            the libFuzzer targets, staged in build-fuzz/bin/fuzz-<target>
#   make fuzz-run FUZZ_SECONDS=60   runs each target for that long from its corpus
#   make fuzz-seeds      rewrites the generated seeds in Tests/fuzz/corpus/<target>/
# docs/testing.md says what each checks and how to read a failure.

SHELL := /bin/bash
PREFIX ?= /usr/local
STAGE ?= $(CURDIR)/build
SWIFT_BUILD ?= $(CURDIR)/.build
ABI_MAJOR := 1
SONAME := libchimaera.so.$(ABI_MAJOR)
CC ?= cc
CFLAGS ?= -O2 -g -Wall -Wextra -Werror
CHI_CFLAGS := -I$(CURDIR)/include
CHI_LDFLAGS := -L$(STAGE)/lib -lchimaera -Wl,-rpath,$(STAGE)/lib
DEB_PKGS := libssl-dev liburing-dev libnuma-dev libffi-dev libyaml-dev pkg-config zlib1g-dev cmake python3-venv fio tmux etcd-server

SWIFT_SOURCES := $(shell find Sources/Chimaera Sources/ChimaeraCExports Sources/CChimaera Sources/ChimaeraYAML -type f) Package.swift
TOOL_SOURCES := $(shell find Sources/ChimaeraTool Sources/ChimaeraDevKit Sources/ChimaeraYAML Sources/CChimaeraABI -type f) Package.swift
MODULES := $(notdir $(wildcard Sources/Mods/*))
# Extra libraries a built-in module links (by module name).
LDLIBS_bdev := -luring

# ---- the sanitized variant: `make sanitize` re-runs this Makefile with SANITIZE=1 ------------
# Swift gets -sanitize=address only: swiftc has no -sanitize=undefined on Linux (Swift traps on
# overflow and bad casts by itself). C (the CChimaera shim, SwiftNIO's C parts, the modules,
# the tool) gets ASan + UBSan. The ASan runtime is not linked into libchimaera.so (swiftc
# -emit-library leaves __asan_* undefined, as clang -shared does): the executable provides it.
# So every program that loads the sanitized library must itself be linked with
# -fsanitize=address by this toolchain's clang (same compiler-rt; gcc's libasan is another
# runtime), or run with LD_PRELOAD=$$(clang -print-file-name=libclang_rt.asan-x86_64.so).
SAN_STAGE ?= $(CURDIR)/build-san
SAN_SWIFT_BUILD ?= $(CURDIR)/.build-san
SAN_CC ?= $(dir $(realpath $(shell command -v swiftc)))clang
SAN_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ifeq ($(SANITIZE),1)
override CC := $(SAN_CC)
override CFLAGS := -O1 -g -Wall -Wextra -Werror $(SAN_CFLAGS)
# gold, clang's default here, warns about every ASan helper the executable exports.
LINK_FLAGS := -fuse-ld=lld
SWIFT_FLAGS := --sanitize address -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined \
  -Xcc -fno-omit-frame-pointer
endif

.PHONY: all headers examples python-bench deps lib modules tool bench-tools cmake-files install demo test test-swift test-c test-e2e bench clean
.PHONY: sanitize sanitize-test fuzz fuzz-run fuzz-seeds swift-package

all: lib modules tool bench-tools cmake-files headers examples swift-package

# ---- set-up ---------------------------------------------------------------------------
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || \
	    { echo "apt-get install$$missing failed (are you root?)"; exit 1; }; \
	fi
	@python3 -c 'import pytest' 2>/dev/null || pip install -q pytest
	@python3 -c 'import cryptography' 2>/dev/null || pip install -q cryptography

# ---- the library -------------------------------------------------------------------------
$(STAGE)/lib/$(SONAME): $(SWIFT_SOURCES) Sources/ChimaeraCExports/chimaera.map
	swift build -c release --product chimaera --scratch-path $(SWIFT_BUILD) $(SWIFT_FLAGS) \
	  -Xswiftc -static-stdlib \
	  -Xlinker -soname=$(SONAME) \
	  -Xlinker --version-script=$(CURDIR)/Sources/ChimaeraCExports/chimaera.map
	@mkdir -p $(STAGE)/lib
	@# Replace, never rewrite in place: processes that have the library mapped would crash.
	cp $(SWIFT_BUILD)/release/libchimaera.so $@.tmp && mv -f $@.tmp $@
	ln -sf $(SONAME) $(STAGE)/lib/libchimaera.so

lib: $(STAGE)/lib/$(SONAME)

headers: $(STAGE)/include/chimaera/chimaera.h
$(STAGE)/include/chimaera/chimaera.h: include/chimaera/*.h $(shell find bindings/cpp/include -type f 2>/dev/null)
	@mkdir -p $(STAGE)/include/chimaera
	cp include/chimaera/*.h $(STAGE)/include/chimaera/
	@if [ -d bindings/cpp/include ]; then cp -r bindings/cpp/include/. $(STAGE)/include/; fi

# ---- built-in modules (C, loaded by name like any user module) ---------------------------
$(STAGE)/lib/chimaera/lib%.so: Sources/Mods/%/*.c include/chimaera/*.h $(STAGE)/lib/$(SONAME)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c11 -shared -fPIC -fvisibility=hidden $(CHI_CFLAGS) $(LINK_FLAGS) \
	  -o $@ $(filter %.c,$^) -L$(STAGE)/lib -lchimaera $(LDLIBS_$*)

modules: $(foreach m,$(MODULES),$(STAGE)/lib/chimaera/lib$(m).so)

# ---- the chimaera tool: its own Swift executable over libchimaera.so's C ABI -----------------
# It links -lchimaera (found in the stage, loaded through $ORIGIN/../lib), so the runtime it
# runs for `start` is the library's one copy, the same modules bind to. Its own Swift standard
# library is linked statically (only C crosses to the library). CHIMAERA_TOOL=1 adds the
# target to Package.swift; its own scratch path keeps the library's build untouched.
# In the sanitized variant the tool itself is built plain: the sanitized library needs the ASan
# runtime first in the process, which a Swift executable cannot link shared, so the tests run
# the tool with LD_PRELOAD of the toolchain's libclang_rt.asan (Tests/e2e/test_sanitized.py).
TOOL_SWIFT_BUILD ?= $(SWIFT_BUILD)-tool
$(STAGE)/bin/chimaera: $(TOOL_SOURCES) $(STAGE)/lib/$(SONAME) $(STAGE)/include/chimaera/chimaera.h
	CHIMAERA_TOOL=1 swift build -c release --product chimaera-tool --scratch-path $(TOOL_SWIFT_BUILD) \
	  --static-swift-stdlib -Xcc -I$(CURDIR)/include -Xlinker -L$(STAGE)/lib -Xlinker -rpath -Xlinker '$$ORIGIN/../lib'
	@mkdir -p $(dir $@)
	cp $(TOOL_SWIFT_BUILD)/release/chimaera-tool $@.tmp && mv -f $@.tmp $@

# The module developer's commands are the same program under other names (Chimaera.main looks at
# argv[0]): chi_make_repo, chi_make_mod, chi_refresh_repo.
DEVKIT_TOOLS := chi_make_repo chi_make_mod chi_refresh_repo

tool: $(STAGE)/bin/chimaera
	@for t in $(DEVKIT_TOOLS); do ln -sfn chimaera $(STAGE)/bin/$$t; done

# ---- the C examples the README runs (client_example, bdev_example), staged in bin/ -----------
EXAMPLES := $(basename $(notdir $(wildcard examples/c/*.c)))
$(STAGE)/bin/%: examples/c/%.c include/chimaera/*.h $(STAGE)/lib/$(SONAME)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=gnu11 $(CHI_CFLAGS) -o $@ $< -L$(STAGE)/lib -lchimaera -Wl,-rpath,'$$ORIGIN/../lib'

examples: $(foreach e,$(EXAMPLES),$(STAGE)/bin/$(e))

# ---- bench helpers (C programs the bench runs as separate processes) ----------------------
BENCH_TOOLS := $(basename $(notdir $(wildcard Sources/BenchTools/*.c)))
$(STAGE)/libexec/chimaera/%: Sources/BenchTools/%.c Sources/BenchTools/bench_samples.h Sources/BenchTools/bench_stream.h $(STAGE)/lib/$(SONAME)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=gnu11 $(CHI_CFLAGS) -o $@ $< -L$(STAGE)/lib -lchimaera \
	  -Wl,-rpath,'$$ORIGIN/../../lib' -lpthread $(LDLIBS_$*)

# small_message's version 2 (Md returns 2), which `chimaera bench upgrade` swaps in.
$(STAGE)/libexec/chimaera/libsmall_message_v2.so: Sources/Mods/small_message/small_message.c include/chimaera/*.h $(STAGE)/lib/$(SONAME)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c11 -shared -fPIC -fvisibility=hidden $(CHI_CFLAGS) -DSM_VERSION=2 -DSM_MD_RET=2 \
	  -o $@ $< -L$(STAGE)/lib -lchimaera

bench-tools: $(foreach t,$(BENCH_TOOLS),$(STAGE)/libexec/chimaera/$(t)) $(STAGE)/libexec/chimaera/libsmall_message_v2.so python-bench \
  $(STAGE)/libexec/chimaera/chi_bench_swift

# `chimaera bench swift`'s program: a Swift executable on the ChimaeraSwift product, linked
# against the staged library (CHIMAERA_PREFIX) and run through $ORIGIN, with its own scratch path.
SWIFTAPI_SOURCES := $(shell find Sources/ChimaeraSwift Sources/ChimaeraBenchSwift Sources/CChimaeraABI -type f) Package.swift
SWIFTAPI_SWIFT_BUILD ?= $(SWIFT_BUILD)-swiftapi
$(STAGE)/libexec/chimaera/chi_bench_swift: $(SWIFTAPI_SOURCES) $(STAGE)/lib/$(SONAME) $(STAGE)/include/chimaera/chimaera.h
	CHIMAERA_SWIFT_BENCH=1 CHIMAERA_PREFIX=$(STAGE) CHIMAERA_RPATH='$$ORIGIN/../../lib' swift build -c release --product chi_bench_swift \
	  --scratch-path $(SWIFTAPI_SWIFT_BUILD) --static-swift-stdlib
	@mkdir -p $(dir $@)
	cp $(SWIFTAPI_SWIFT_BUILD)/release/chi_bench_swift $@.tmp && mv -f $@.tmp $@

# The Python binding, staged for `chimaera bench python` (pip installs it for users).
python-bench:
	@mkdir -p $(STAGE)/lib/python $(STAGE)/libexec/chimaera
	@rm -rf $(STAGE)/lib/python/chimaera
	cp -r bindings/python/chimaera $(STAGE)/lib/python/
	cp examples/python/bench_md.py Sources/BenchTools/python/chi_bench_python $(STAGE)/libexec/chimaera/

# ---- the Swift API as a package of the prefix: share/chimaera/ChimaeraSwift ---------------------
# A user's Package.swift depends on it by path; it links the prefix's libchimaera.so (its
# include/chimaera is a relative symlink to the prefix's headers, kept by `make install`).
SWIFT_PKG := $(STAGE)/share/chimaera/ChimaeraSwift
$(SWIFT_PKG)/Package.swift: $(shell find Sources/ChimaeraSwift Sources/CChimaeraABI -type f)
	rm -rf $(SWIFT_PKG)
	mkdir -p $(SWIFT_PKG)/Sources/ChimaeraSwift $(SWIFT_PKG)/Sources/CChimaeraABI/include
	cp Sources/ChimaeraSwift/*.swift $(SWIFT_PKG)/Sources/ChimaeraSwift/
	cp Sources/CChimaeraABI/abi.c $(SWIFT_PKG)/Sources/CChimaeraABI/
	cp Sources/CChimaeraABI/include/shim.h Sources/CChimaeraABI/include/module.modulemap $(SWIFT_PKG)/Sources/CChimaeraABI/include/
	ln -s ../../../../../../include/chimaera $(SWIFT_PKG)/Sources/CChimaeraABI/include/chimaera
	cp Sources/ChimaeraSwift/Staged/Package.swift $@

swift-package: $(SWIFT_PKG)/Package.swift

# ---- CMake package and pkg-config, written for the staging prefix --------------------------
cmake-files:
	@cmake/write-package-files.sh $(STAGE)

install: all
	@mkdir -p $(PREFIX)
	cp -a $(STAGE)/. $(PREFIX)/
	@cmake/write-package-files.sh $(PREFIX)
	@echo "installed into $(PREFIX)"

# ---- demo, tests, benchmarks ------------------------------------------------------------------
demo: deps all
	@Tests/e2e/demo.sh $(STAGE)

test: deps all
	@Tests/run-all.sh $(STAGE)

bench: deps all
	$(STAGE)/bin/chimaera bench small-message
	$(STAGE)/bin/chimaera bench idle
	$(STAGE)/bin/chimaera bench python
	$(STAGE)/bin/chimaera bench remote
	$(STAGE)/bin/chimaera bench bdev
	$(STAGE)/bin/chimaera bench swift

# ---- sanitizers and fuzzing (docs/testing.md) ---------------------------------------------------
# The sanitized prefix has what the C ABI tests need (no bench helpers, no CMake files); its
# SwiftPM build folder is its own, so it never disturbs build/ and .build/.
sanitize:
	$(MAKE) SANITIZE=1 STAGE=$(SAN_STAGE) SWIFT_BUILD=$(SAN_SWIFT_BUILD) lib modules tool headers

sanitize-test: sanitize
	CHI_SAN_STAGE=$(SAN_STAGE) python3 -m pytest -q Tests/e2e/test_sanitized.py

# libFuzzer targets: one binary, build-fuzz/bin/chimaera-fuzz, and a symlink fuzz-<target> for
# each Tests/fuzz/corpus/<target>/ (the binary picks its target by argv[0]). --sanitize fuzzer
# tells SwiftPM that libFuzzer supplies main (else it links main to the target's own); swiftc
# keeps only its last -sanitize= option, so fuzzer and address are given again as one. lld,
# because gold warns about every ASan helper the executable exports.
FUZZ_STAGE ?= $(CURDIR)/build-fuzz
FUZZ_SWIFT_BUILD ?= $(CURDIR)/.build-fuzz
FUZZ_TARGETS := $(notdir $(wildcard Tests/fuzz/corpus/*))
FUZZ_SECONDS ?= 60
FUZZ_SOURCES := $(shell find Sources/Chimaera Sources/ChimaeraFuzz Sources/CChimaeraFuzzMods Sources/Mods -type f)

$(FUZZ_STAGE)/bin/chimaera-fuzz: $(SWIFT_SOURCES) $(FUZZ_SOURCES)
	swift build -c release --product ChimaeraFuzz --scratch-path $(FUZZ_SWIFT_BUILD) \
	  --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address -Xswiftc -DCHI_FUZZ -Xswiftc -use-ld=lld \
	  -Xcc -fsanitize=address,undefined -Xcc -fno-sanitize-recover=undefined
	@mkdir -p $(dir $@)
	cp $(FUZZ_SWIFT_BUILD)/release/ChimaeraFuzz $@.tmp && mv -f $@.tmp $@

fuzz: $(FUZZ_STAGE)/bin/chimaera-fuzz
	@for t in $(FUZZ_TARGETS); do ln -sfn chimaera-fuzz $(FUZZ_STAGE)/bin/fuzz-$$t; done

fuzz-run: fuzz
	Tests/fuzz/run.sh $(FUZZ_STAGE) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Rewrites the generated seeds (seed-<n>) of each target from its own generator: after a
# change to the wire format. Hand-made inputs (regress-*) are kept.
fuzz-seeds: fuzz
	@for t in $(FUZZ_TARGETS); do rm -f Tests/fuzz/corpus/$$t/seed-*; \
	  CHI_FUZZ_WRITE_SEEDS=Tests/fuzz/corpus/$$t $(FUZZ_STAGE)/bin/fuzz-$$t || exit 1; done

clean:
	rm -rf $(STAGE) $(SWIFT_BUILD) $(SAN_STAGE) $(SAN_SWIFT_BUILD) $(FUZZ_STAGE) $(FUZZ_SWIFT_BUILD)
