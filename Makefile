# fusec - top-level Makefile.
#
#   make            builds build/fusec (the compiler) and build/libfusec_rt.a (the runtime), and
#                   build/libfusec_comm.a (MPI, for --tp) where mpicc exists
#   make test       installs what the tests use when missing (scripts/install-deps.sh), builds, runs every test
#                   (SUITES="cli golden" runs only those tests/*/run.sh suites after the unit programs;
#                   JOBS=N runs N of them at once, default the number of CPUs; tests/run.sh says more)
#   make demo       compiles dsl-examples/llama_layer.fdl and checks it against the golden layer
#   make regen      rewrites generated/ from dsl-examples/
#   make unit-test  builds and runs only the unit-test programs (make units only builds them)
#   make coverage   line coverage of compiler/ and runtime/ by all the tests (build-cov/)
#   make SAN=1 ...  the same with AddressSanitizer and UndefinedBehaviorSanitizer (in build-san/):
#                   fusec, the runtime, the unit tests and the C that fusec check compiles
#   make tsan       ThreadSanitizer on the thread pool and on blocks run on several threads
#   make fuzz       libFuzzer on the front end, the safetensors reader and the generated API,
#                   FUZZ_SECONDS each (60; or 30m, 2h); corpora kept in tests/fuzz/corpus/
#   make fuzz-diff  N random programs (default 200) differential-tested on every target here
#   make bench      the benchmark suite (docs/benchmarks.md); make bench QUICK=1 is short
#   make bench-compile  compile time and memory against block size, up to 100,000 operators
#   make peers-llama   llama.cpp built from source (PyPI sdist) into build/peers: the peer of
#                   bench/types.sh and make bench-model (docs/benchmarks.md, "llama.cpp")
#   make install    PREFIX (/usr/local) and DESTDIR as usual: bin/fusec, lib/libfusec_rt.a,
#                   include/fusec_rt.h, lib/pkgconfig/fusec-rt.pc, share/man/man1/fusec.1,
#                   share/fusec/runtime/ (what fusec check compiles); make uninstall
#
# Every source file is listed by wildcard: a new pass in compiler/ or a new
# tests/unit/test_*.c is picked up without editing this file.

CC      ?= cc
# The golden Hugging Face files the demo and the tests use (committed copies).
GOLDEN  ?= tests/golden/hf
# A sanitized build never shares objects with the plain one (make cannot tell
# them apart): SAN=1 builds into build-san unless BUILD is given.
ifeq ($(SAN),1)
BUILD   ?= build-san
endif
BUILD   ?= build

WARN    = -Wall -Wextra -Wpedantic -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CSTD    = -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
OPT     ?= -O2 -g
ifeq ($(SAN),1)
OPT     = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
# The project's flags first, the user's CFLAGS after them: `make CFLAGS=-O0`
# adds to -std=c99 ... (and wins where they conflict) instead of replacing them.
ALL_CFLAGS = $(CSTD) $(OPT) $(CFLAGS)
RT_CFLAGS = $(ALL_CFLAGS) $(WARN) -Werror -Iruntime
FU_CFLAGS = $(ALL_CFLAGS) $(WARN) -Werror -Icompiler -I$(BUILD)/compiler -Iruntime \
            -DFUSEC_RUNTIME_DIR='"$(abspath runtime)"' -DFUSEC_LIB_DIR='"$(abspath $(BUILD))"' \
            -DFUSEC_SAN=$(if $(filter 1,$(SAN)),1,0)
# flex/bison output is not ours to make -Wpedantic clean.
GEN_CFLAGS = $(ALL_CFLAGS) -Wall -Wno-unused-function -Wno-sign-compare -Icompiler -I$(BUILD)/compiler -Iruntime
LDLIBS  = -lm -lpthread

RT_SRC   = $(wildcard runtime/*.c)
RT_OBJ   = $(RT_SRC:%.c=$(BUILD)/%.o)
FU_SRC   = $(filter-out compiler/main.c,$(wildcard compiler/*.c))
FU_OBJ   = $(FU_SRC:%.c=$(BUILD)/%.o) $(BUILD)/compiler/parse.tab.o $(BUILD)/compiler/lex.yy.o
HDRS     = compiler/fusec.h compiler/ops.def compiler/dtypes.def runtime/fusec_rt.h
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

FUSEC    = $(BUILD)/fusec
RTLIB    = $(BUILD)/libfusec_rt.a
VERSION  = $(shell sed -n 's/^\#define FUSEC_VERSION "\(.*\)"/\1/p' compiler/fusec.h)

# The layout under PREFIX is fixed: an installed fusec finds share/fusec and
# lib relative to its own bin/ (so a moved prefix keeps working).
PREFIX  ?= /usr/local
DEST     = $(DESTDIR)$(PREFIX)

.PHONY: all deps deps-build test units unit-test demo regen clean install uninstall
all: $(FUSEC) $(RTLIB)

# ---- dependencies ---------------------------------------------------------------
# deps: everything make test uses (cmocka, numpy, the AArch64 cross compiler
# and qemu-user, clang's libFuzzer, pkg-config); deps-build: what make and
# make demo need (cc, make, flex, bison).  Both install only what is missing.
deps:
	@sh scripts/install-deps.sh
deps-build:
	@sh scripts/install-deps.sh --build

# ---- runtime -----------------------------------------------------------------
$(BUILD)/runtime/%.o: runtime/%.c runtime/fusec_rt.h
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -c $< -o $@

$(RTLIB): $(RT_OBJ)
	@rm -f $@
	ar rcs $@ $(RT_OBJ)

# libfusec_comm.a: the MPI communicator of --tp blocks (docs/distributed.md),
# only where mpicc exists (`make comm`; fusec run --tp and tests/tp build it).
MPICC   ?= mpicc
COMMLIB  = $(BUILD)/libfusec_comm.a
all: $(if $(shell command -v $(MPICC) 2>/dev/null),$(COMMLIB))
.PHONY: comm
comm: $(COMMLIB)
$(COMMLIB): runtime/mpi/comm.c runtime/mpi/fusec_comm.h runtime/fusec_rt.h
	@mkdir -p $(BUILD)/runtime/mpi
	$(MPICC) $(RT_CFLAGS) -Iruntime/mpi -c runtime/mpi/comm.c -o $(BUILD)/runtime/mpi/comm.o
	@rm -f $@
	ar rcs $@ $(BUILD)/runtime/mpi/comm.o

# ---- compiler ----------------------------------------------------------------
# Pattern rules with two targets run their recipe once (a plain two-target
# rule would run bison twice under make -j).
$(BUILD)/compiler/%.tab.c $(BUILD)/compiler/%.tab.h: compiler/%.y
	@mkdir -p $(BUILD)/compiler
	bison -Wall -Werror --defines=$(BUILD)/compiler/$*.tab.h -o $(BUILD)/compiler/$*.tab.c $<

$(BUILD)/compiler/%.yy.c $(BUILD)/compiler/%.yy.h: compiler/%.l
	@mkdir -p $(BUILD)/compiler
	flex --header-file=$(BUILD)/compiler/$*.yy.h -o $(BUILD)/compiler/$*.yy.c $<

$(BUILD)/compiler/parse.tab.o: $(BUILD)/compiler/parse.tab.c $(BUILD)/compiler/lex.yy.h $(HDRS)
	$(CC) $(GEN_CFLAGS) -c $< -o $@
$(BUILD)/compiler/lex.yy.o: $(BUILD)/compiler/lex.yy.c $(BUILD)/compiler/parse.tab.h $(HDRS)
	$(CC) $(GEN_CFLAGS) -c $< -o $@

$(BUILD)/compiler/%.o: compiler/%.c $(HDRS) $(BUILD)/compiler/parse.tab.h $(BUILD)/compiler/lex.yy.h
	@mkdir -p $(dir $@)
	$(CC) $(FU_CFLAGS) -c $< -o $@

$(FUSEC): $(BUILD)/compiler/main.o $(FU_OBJ) $(RTLIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(BUILD)/compiler/main.o $(FU_OBJ) $(RTLIB) $(LDLIBS)

# ---- tests -------------------------------------------------------------------
$(BUILD)/tests/%: tests/unit/%.c tests/unit/blockrun.c tests/unit/blockrun.h $(FU_OBJ) $(RTLIB) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(FU_CFLAGS) -Wno-missing-prototypes $(LDFLAGS) -o $@ $< tests/unit/blockrun.c $(FU_OBJ) $(RTLIB) -lcmocka $(LDLIBS)

# Every unit program runs, whatever the ones before it did (tests/unit/run.sh
# judges each: failures, and skips for a reason that does not hold here).
units: $(UNIT_BIN)

unit-test: $(UNIT_BIN)
	@FUSEC_LIB_DIR=$(BUILD) sh tests/unit/run.sh $(UNIT_BIN)

# The unit programs and then every suite (tests/run.sh), all of them even
# after a failure; the last line is "N passed, M failed".
test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@FUSEC=$(FUSEC) GOLDEN=$(GOLDEN) SAN=$(SAN) FUSEC_LIB_DIR=$(BUILD) CC="$(CC)" sh tests/run.sh

demo: deps-build
	@$(MAKE) --no-print-directory all
	@mkdir -p $(BUILD)/demo
	$(FUSEC) dsl-examples/llama_layer.fdl -o $(BUILD)/demo/llama_layer.c
	$(FUSEC) check dsl-examples/llama_layer.fdl --golden $(GOLDEN)/llama_layer.safetensors
	@echo "demo: a whole model (3 layers, tied embeddings): 8 greedy tokens after a 13-token prompt;"
	@echo "demo: Hugging Face's float64 run generates 294 277 287 166 474 373 248 476"
	$(FUSEC) run dsl-examples/smollm_model.fdl --weights $(GOLDEN)/smollm_tiny_model.safetensors \
	    --weight-prefix w. --prompt-ids 131,95,220,471,93,257,343,440,315,25,456,142,502 -n 8

# ---- install ------------------------------------------------------------------------
# fusec-rt.pc names its prefix relative to itself (${pcfiledir}), so it too
# survives a moved prefix; the library is static, hence -lm -lpthread in Libs.
# runtimesrcdir: the runtime's sources, for cross builds (examples/downstream).
$(BUILD)/fusec-rt.pc: compiler/fusec.h Makefile
	@mkdir -p $(BUILD)
	printf '%s\n' 'prefix=$${pcfiledir}/../..' 'includedir=$${prefix}/include' 'libdir=$${prefix}/lib' \
	    'runtimesrcdir=$${prefix}/share/fusec/runtime' '' \
	    'Name: fusec-rt' \
	    'Description: runtime of the C that fusec generates (thread pool, workspace, safetensors, CPU dispatch)' \
	    'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lfusec_rt -lm -lpthread' >$@

install: all $(BUILD)/fusec-rt.pc
	install -d $(DEST)/bin $(DEST)/lib/pkgconfig $(DEST)/include $(DEST)/share/man/man1 \
	    $(DEST)/share/fusec/runtime/harness
	install -m 755 $(FUSEC) $(DEST)/bin/fusec
	install -m 644 $(RTLIB) $(DEST)/lib/libfusec_rt.a
	install -m 644 $(BUILD)/fusec-rt.pc $(DEST)/lib/pkgconfig/fusec-rt.pc
	install -m 644 runtime/fusec_rt.h $(DEST)/include/fusec_rt.h
	install -m 644 docs/fusec.1 $(DEST)/share/man/man1/fusec.1
	install -m 644 $(RT_SRC) runtime/fusec_rt.h $(DEST)/share/fusec/runtime
	install -m 644 runtime/harness/check_main.c runtime/harness/run_main.c $(DEST)/share/fusec/runtime/harness
	install -d $(DEST)/share/fusec/runtime/mpi
	install -m 644 runtime/mpi/fusec_comm.h $(DEST)/share/fusec/runtime/mpi
	if [ -f $(COMMLIB) ]; then install -m 644 $(COMMLIB) $(DEST)/lib/libfusec_comm.a; fi

uninstall:
	rm -f $(DEST)/bin/fusec $(DEST)/lib/libfusec_rt.a $(DEST)/lib/libfusec_comm.a $(DEST)/lib/pkgconfig/fusec-rt.pc \
	    $(DEST)/include/fusec_rt.h $(DEST)/share/man/man1/fusec.1
	rm -rf $(DEST)/share/fusec

regen: $(FUSEC)
	@sh tests/regen.sh $(FUSEC)

# ---- benchmarks (not part of make test) ---------------------------------------
# bench/run.sh builds the variants and the driver under $(BUILD)/bench and
# writes bench/results/; bench/install-deps.sh adds OpenBLAS and PyTorch.
.PHONY: bench bench-moe
bench: all
	@sh bench/install-deps.sh
	@CC="$(CC)" BUILD="$(BUILD)" GOLDEN="$(GOLDEN)" QUICK="$(QUICK)" BENCH_ARGS="$(BENCH_ARGS)" sh bench/run.sh

# W7: the sparse MoE block against the dense workaround (bench/moe/run.sh)
bench-moe: all
	@CC="$(CC)" BUILD="$(BUILD)" sh bench/moe/run.sh

# make peers-llama: llama.cpp from source into $(BUILD)/peers, the peer of
# bench/types.sh and W6 (bench/install-llama.sh; needs PyPI, cmake, g++)
.PHONY: peers-llama
peers-llama:
	@PEERS_DIR=$(BUILD)/peers sh bench/install-llama.sh

# make bench-compile: how compile time and memory grow with the number of
# operators (bench/compile/run.py; sizes 1,000 to 100,000; CSV and SVG in
# bench/results/compile-*).  BENCH_ARGS passes options (--sizes, --opt, --repeat).
.PHONY: bench-compile
bench-compile: $(FUSEC)
	@/usr/bin/python3 bench/compile/run.py --fusec $(FUSEC) $(BENCH_ARGS)

# make bench-model: W6, a whole model at Llama-3.2-1B shape (random weights, about
# 5 GB in $(BUILD)/bench/w6), prefill 512 and decode, fusec run against PyTorch and llama.cpp
# (bench/model/w6.sh; THREADS, PROMPT, DECODE, REPEAT and smaller shapes by variable).
.PHONY: bench-model
bench-model: all
	@FUSEC=$(FUSEC) DIR=$(BUILD)/bench/w6 PEERS_DIR=$(BUILD)/peers sh bench/model/w6.sh

# ---- reliability (not part of make test) ------------------------------------------
# make fuzz: tests/fuzz/install-deps.sh adds clang's libFuzzer runtime;
# corpora are minimised into tests/fuzz/corpus/, crashes land in $(BUILD)/fuzz/crashes.
# make fuzz-diff N=1000 [SEED=...]: a new seed each run unless SEED is given.
# make tsan: its own objects, in $(BUILD)/tsan.
FUZZ_SECONDS ?= 60
N ?= 200
.PHONY: fuzz fuzz-diff tsan
fuzz: all
	@sh tests/fuzz/install-deps.sh
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) GOLDEN=$(GOLDEN) sh tests/fuzz/fuzz.sh

fuzz-diff: all
	@/usr/bin/python3 tests/diff/fdlgen.py run --fusec $(FUSEC) -n $(N) --seed $(or $(SEED),$(shell date +%s)) \
	    --out $(BUILD)/diff-failures

tsan: all
	@BUILD=$(BUILD) FUSEC_CHECK_CACHE=$(abspath $(BUILD))/check-cache CC="$(CC)" GOLDEN=$(GOLDEN) sh tests/tsan.sh

# ---- coverage (not part of make test) -------------------------------------------
# make coverage: fusec, the runtime and the unit tests built with gcc
# --coverage into $(COV_BUILD), every test run (COV_SUITES="golden fusion"
# runs only those suites), then gcovr's line coverage per file of compiler/
# and runtime/.  scripts/install-deps.sh --coverage first installs what the
# tests use and gcovr (Debian's), when missing.  docs/coverage.md.
COV_BUILD ?= build-cov
.PHONY: coverage
coverage:
	@sh scripts/install-deps.sh --coverage
	@$(MAKE) --no-print-directory BUILD=$(COV_BUILD) OPT="-O0 -g --coverage -fprofile-update=atomic" all \
	    $(UNIT_SRC:tests/unit/%.c=$(COV_BUILD)/tests/%)
	@COV_BUILD=$(COV_BUILD) GOLDEN=$(GOLDEN) CC="$(CC)" COV_SUITES="$(COV_SUITES)" sh tests/coverage.sh

clean:
	rm -rf $(BUILD) $(COV_BUILD)
