# wsplice - WebSocket to TCP gateway. `make help` lists the targets.

VERSION    := 0.1.0
PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      ?= build
CC         ?= cc
PYTHON     ?= /usr/bin/python3

PKGS       := libevent libevent_openssl openssl inih
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Debian's libinih exposes its parser settings as variables; use them when present.
INI_RUNTIME := $(shell grep -qs 'extern int ini_max_line' /usr/include/ini.h && echo -DHAVE_INI_RUNTIME_OPTIONS)

CFLAGS     ?= -O2 -g
WARN       := -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
              -Wwrite-strings -Wcast-qual -Wvla -Wundef -Wimplicit-fallthrough -Wnull-dereference
SAN        := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all)
GW_CFLAGS   = -std=c11 -pthread -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DWSPLICE_VERSION='"$(VERSION)"' \
              $(INI_RUNTIME) -MMD -MP $(WARN) $(if $(filter 1,$(WERROR)),-Werror) \
              $(SAN) $(PKG_CFLAGS) $(CPPFLAGS) $(CFLAGS)
GW_LIBS     = $(SAN) -pthread $(LDFLAGS) $(PKG_LIBS) $(LDLIBS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

SRCS := $(wildcard src/*.c)
OBJS := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
BIN  := $(BUILD)/wsplice

# Each unit test links its module, what that needs, and nothing else.
UNIT_MODULES := addr base64 utf8 ws_frame http_upgrade route tls resolver iplimit webroot
UNIT_DEPS_ws_frame     := utf8
UNIT_DEPS_http_upgrade := base64
UNIT_DEPS_route        := addr
UNIT_DEPS_tls          := log addr
UNIT_DEPS_resolver     := log
UNIT_DEPS_webroot      := http_upgrade base64
UNIT_TESTS := $(UNIT_MODULES:%=$(BUILD)/unit/test_%)

.PHONY: all clean bench soak testssl test test-now unit integration e2e e2e-now demo check valgrind lint format \
        fuzz install uninstall help run deps conf-check

all: $(BIN)

$(BIN): $(OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $(OBJS) $(GW_LIBS)

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj
	@echo "  CC      $<"
	$(Q)$(CC) $(GW_CFLAGS) -c -o $@ $<

$(BUILD)/obj $(BUILD)/unit:
	$(Q)mkdir -p $@

# Unit tests link their module's object plus its pure dependencies.
.SECONDEXPANSION:
unit_deps = $(addprefix $(BUILD)/obj/,$(addsuffix .o,$(UNIT_DEPS_$(1))))
$(BUILD)/unit/test_%: tests/unit/test_%.c $(BUILD)/obj/%.o $$(call unit_deps,$$*) tests/unit/check.h | $(BUILD)/unit
	@echo "  CC      $@"
	$(Q)$(CC) $(GW_CFLAGS) -Isrc -o $@ $< $(BUILD)/obj/$*.o $(call unit_deps,$*) $(GW_LIBS)

unit: $(UNIT_TESTS) $(BIN)
	$(Q)tests/run_unit.sh $(BUILD) $(UNIT_TESTS)

integration: $(BIN)
	$(Q)WSPLICE_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

conf-check: $(BIN)
	$(Q)tests/check_conf.sh $(BIN) conf/wsplice.ini

# Browser tests: Debian's Chromium (playwright-core from tests/e2e/package-lock.json) against
# the real binary, ngircd and Xvnc on loopback; screenshots and logs in tests/e2e/out/.
e2e:
	$(Q).ci/install-deps --missing e2e
	$(Q)$(MAKE) --no-print-directory e2e-now

e2e-now: $(BIN)
	$(Q)tests/e2e/run.sh $(BIN)

# The chat demo: ngircd and wsplice on loopback with conf/demo/; Ctrl-C stops both.
demo:
	$(Q).ci/install-deps --missing demo
	$(Q)$(MAKE) --no-print-directory $(BIN)
	$(Q)conf/demo/run-demo.sh $(BIN)

# unit, integration, soak, browser tests (E2E=0 skips them), then the example config; the
# last line is the summary.
# Missing packages are installed first; a sub-make then sees their pkg-config flags.
test:
	$(Q).ci/install-deps --missing test
	$(Q)$(MAKE) --no-print-directory test-now

test-now: $(BIN) $(UNIT_TESTS)
	$(Q)tests/run_all.sh $(BUILD) $(BIN) $(PYTHON)

# ASan keeps freed memory in a 256 MB quarantine by default, which would swamp the tests'
# memory bounds; 16 MB still catches use-after-free of recent frees.
check:
	$(Q).ci/install-deps --missing check
	$(Q)ASAN_OPTIONS=quarantine_size_mb=16:detect_leaks=1 $(MAKE) --no-print-directory BUILD=build/san \
		SANITIZE=address,undefined WERROR=1 CFLAGS="-O1 -g" test
	$(Q)$(MAKE) --no-print-directory BUILD=build/valgrind WERROR=1 CFLAGS="-O1 -g" valgrind
	$(Q)$(MAKE) --no-print-directory lint

# The core integration cases (tests/valgrind_cases.txt) with the gateway under valgrind
# memcheck; ASan builds cannot run under valgrind, so this is a plain build.
valgrind: $(BIN)
	$(Q)tests/run_valgrind.sh $(BIN) $(PYTHON) $(PYTEST_ARGS)

lint:
	$(Q)clang-format --dry-run -Werror src/*.c src/*.h tests/unit/*.c tests/unit/*.h
	$(Q)cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
		--suppress=missingIncludeSystem -D__GNUC__ -DHAVE_INI_RUNTIME_OPTIONS src/

format:
	$(Q)clang-format -i src/*.c src/*.h tests/unit/*.c tests/unit/*.h

# Fuzzing: clang libFuzzer with ASan and UBSan; each target runs FUZZ_SECONDS.
FUZZ_SECONDS ?= 10
FUZZ_CC      ?= clang
FUZZ_FLAGS    = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(INI_RUNTIME) -g -O1 \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc $(PKG_CFLAGS)
FUZZ_TARGETS := ws_frame http_upgrade utf8 base64 config session webroot
FUZZ_SRCS_ws_frame     := src/ws_frame.c src/utf8.c
FUZZ_SRCS_http_upgrade := src/http_upgrade.c src/base64.c
FUZZ_SRCS_utf8         := src/utf8.c
FUZZ_SRCS_base64       := src/base64.c
FUZZ_SRCS_config       := src/config.c src/route.c src/addr.c src/log.c src/tls.c src/webroot.c \
                          src/http_upgrade.c src/base64.c
FUZZ_SRCS_session      := $(filter-out src/main.c,$(SRCS))
FUZZ_SRCS_webroot      := src/webroot.c src/http_upgrade.c src/base64.c
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard src/*.c src/*.h)
	@mkdir -p $(BUILD)/fuzz
	@echo "  FUZZ    $@"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRCS_$*) $(PKG_LIBS)

fuzz: $(FUZZ_BINS)
	$(Q)tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

run:
	$(Q).ci/install-deps --missing build
	$(Q)$(MAKE) --no-print-directory $(BIN)
	$(BIN) -c conf/wsplice.ini

# The soak: hundreds of concurrent sessions with random sizes, directions and faults for
# SOAK_SECONDS (default 600), every healthy byte hash-checked; fds and RSS must come back.
SOAK_SECONDS ?= 600
soak: $(BIN)
	$(Q)$(PYTHON) tests/soak/soak.py --seconds $(SOAK_SECONDS) --gateway $(BIN) --progress

# testssl.sh against a real TLS listener; fails on any HIGH or CRITICAL finding.
testssl: $(BIN)
	$(Q)tests/tls/testssl.sh $(abspath $(BIN))

# The benchmark: its own tools under tests/bench, built with the same flags.
bench: $(BIN)
	$(Q)$(MAKE) --no-print-directory -f tests/bench/bench.mk BUILD=$(BUILD) CC=$(CC)
	$(Q)$(PYTHON) tests/bench/run.py --gateway $(BIN) --tools $(BUILD)/bench $(BENCH_ARGS)

deps:
	$(Q).ci/install-deps

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/wsplice
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/wsplice
	install -m 644 conf/wsplice.ini README.md LICENSE $(DESTDIR)$(PREFIX)/share/doc/wsplice/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/wsplice
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/wsplice

clean:
	rm -rf build

help:
	@echo "make              build $(BIN)"
	@echo "make run          build and run on conf/wsplice.ini"
	@echo "make test         unit tests, integration tests, config check; last line is the summary"
	@echo "make unit         C unit tests of the pure modules"
	@echo "make integration  pytest suite against the real binary (PYTEST_ARGS=... to select)"
	@echo "make e2e          browser tests: noVNC and the chat demo in headless Chromium (make test runs them too)"
	@echo "make demo         the chat demo: IRC in the browser through wsplice; prints the URL, Ctrl-C stops"
	@echo "make check        test under ASan+UBSan with -Werror, the valgrind cases, then lint"
	@echo "make valgrind     the core integration cases with the gateway under valgrind memcheck"
	@echo "make soak         10-minute soak with faults, hash-checked (SOAK_SECONDS=...); make test runs 60 s"
	@echo "make testssl      testssl.sh against a TLS listener; fails on HIGH/CRITICAL findings"
	@echo "make fuzz         each libFuzzer target for FUZZ_SECONDS (default 10)"
	@echo "make lint         clang-format --dry-run and cppcheck"
	@echo "make format       apply clang-format"
	@echo "make bench        throughput, latency and connection benchmark vs a raw relay and websockify"
	@echo "make docker-test  build the image with podman and check it (root; podman, runc, debootstrap)"
	@echo "make deps         install build and test dependencies (Debian 12, as root)"
	@echo "make install      install to \$$DESTDIR\$$PREFIX (default /usr/local)"
	@echo "make clean        remove build/"

-include $(OBJS:.o=.d)

# The container image (docker/), built and checked with rootful podman; no Docker engine
# or registry needed. docker-test configures podman, imports a debootstrapped base once
# (cached in /var/cache/wsplice-docker), builds, and runs tests/docker/docker_test.py.
.PHONY: docker-image docker-test
docker-image:
	$(Q).ci/install-deps --missing docker
	$(Q)tests/docker/setup-podman.sh
	$(Q)tests/docker/base-image.sh
	$(Q)podman build --pull=never --format docker -f docker/Dockerfile -t wsplice .
	$(Q)podman images --filter reference=wsplice

docker-test:
	$(Q).ci/install-deps --missing docker
	$(Q)mkdir -p $(BUILD)
	$(Q)PYTHON=$(PYTHON) tests/docker/run.sh
