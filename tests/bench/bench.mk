# Builds the benchmark's tools into $(BUILD)/bench. Called by the top-level `make bench`
# as: make -f tests/bench/bench.mk BUILD=build CC=cc
BUILD  ?= build
CC     ?= cc
CFLAGS ?= -O2 -g
OUT    := $(BUILD)/bench
SRC    := tests/bench
WARN   := -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
          -Wwrite-strings -Wcast-qual -Wvla -Wundef -Wimplicit-fallthrough -Wnull-dereference
# -O2 always: the tools must not be the bottleneck, whatever CFLAGS says about debugging.
BENCH_CFLAGS = -std=c11 -D_GNU_SOURCE -Isrc $(WARN) $(CFLAGS) -O2
TOOLS  := loadgen backend relay
# loadgen speaks wss:// with OpenSSL (libssl-dev).
SSL_LIBS := $(shell pkg-config --libs openssl 2>/dev/null || echo -lssl -lcrypto)
$(OUT)/loadgen: LIBS = $(SSL_LIBS)

.PHONY: all clean
all: $(TOOLS:%=$(OUT)/%)

$(OUT)/%: $(SRC)/%.c $(SRC)/benchlib.c $(SRC)/benchlib.h $(SRC)/bench.mk | $(OUT)
	@echo "  CC      $@"
	@$(CC) $(BENCH_CFLAGS) -o $@ $< $(SRC)/benchlib.c $(LIBS)

$(OUT):
	@mkdir -p $@

clean:
	rm -rf $(OUT)
