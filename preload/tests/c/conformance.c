/* The malloc family as glibc 2.36 behaves, case by case.
 *
 * `conformance CASE` runs one case and exits 0 when every check holds. The test suite runs
 * each case twice: on glibc's own malloc and with libptalloc.so preloaded; both must pass,
 * so every expectation here is glibc's behaviour, not just ptalloc's.
 * `conformance list` prints the case names.
 *
 * Build with -fno-builtin: otherwise the compiler may delete malloc/free pairs it can see
 * through, and with them the behaviour under test. */
#define _GNU_SOURCE
/* The corruption cases free bad pointers on purpose; mallinfo is tested for compatibility. */
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

/* Keep the compiler from reasoning about (or removing) allocations. */
static void *volatile sink;
static size_t opaque(size_t n) { return *(volatile size_t *)&n; }

/* ------------------------------------------------------------------ helpers */

static unsigned long start_brk(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *tok = strtok(strrchr(buf, ')') + 2, " "); /* field 3 */
    for (int field = 3; tok && field < 47; field++) tok = strtok(NULL, " ");
    return tok ? strtoul(tok, NULL, 10) : 0;
}

static int in_brk_heap(void *p) {
    unsigned long a = (unsigned long)p;
    return a >= start_brk() && a < (unsigned long)sbrk(0);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 31);
}

static int verify(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 31)) return 0;
    return 1;
}

/* Run `fn` in a child with stderr captured; expect death by SIGABRT after printing `line`
 * (or, if `alt` is not NULL, that line instead). */
static void expect_abort_either(void (*fn)(void), const char *line, const char *alt) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    char buf[512];
    ssize_t total = 0, n;
    while ((n = read(fds[0], buf + total, sizeof buf - 1 - total)) > 0) total += n;
    buf[total] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char want[256], want2[256];
    snprintf(want, sizeof want, "%s\n", line);
    snprintf(want2, sizeof want2, "%s\n", alt ? alt : line);
    if (strcmp(buf, want) != 0 && strcmp(buf, want2) != 0) {
        fprintf(stderr, "expected abort message %s got %s\n", want, buf);
        failures++;
    }
}

static void expect_abort(void (*fn)(void), const char *line) { expect_abort_either(fn, line, NULL); }

/* ------------------------------------------------------------------ cases */

static void case_malloc(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b);                         /* unique pointers */
    CHECK(malloc_usable_size(a) == 24);
    CHECK(((uintptr_t)a & 15) == 0);
    free(a);
    free(b);
    size_t sizes[] = {1, 24, 25, 40, 100, 1000, 1032, 1033, 5000, 100000};
    size_t usable[] = {24, 24, 40, 40, 104, 1000, 1032, 1048, 5000, 100008};
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = malloc(opaque(sizes[i]));
        CHECK(p && ((uintptr_t)p & 15) == 0);
        CHECK(malloc_usable_size(p) == usable[i]);
        fill(p, sizes[i], i);
        CHECK(verify(p, sizes[i], i));
        free(p);
    }
    /* An mmapped chunk: whole pages less the 16-byte header. */
    void *big = malloc(opaque(1 << 20));
    CHECK(malloc_usable_size(big) == (1 << 20) + 4096 - 16);
    free(big);
    errno = 0;
    CHECK(malloc(opaque(SIZE_MAX)) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(opaque((size_t)PTRDIFF_MAX + 1)) == NULL && errno == ENOMEM);
    CHECK(malloc_usable_size(NULL) == 0);
}

static void case_free(void) {
    free(NULL);
    for (int i = 0; i < 100; i++) {
        void *p = malloc(opaque(i * 1000));
        errno = 1234;
        free(p);
        CHECK(errno == 1234);                        /* free preserves errno */
    }
    void *big = malloc(opaque(4 << 20));
    errno = 4321;
    free(big);                                       /* munmap inside: errno kept */
    CHECK(errno == 4321);
    /* cfree and the C23 sized frees: glibc 2.36 links cfree only as a compat symbol and
     * has no free_sized yet, so they are looked up at run time. */
    void (*cfree_fn)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    if (cfree_fn) cfree_fn(malloc(64));
    void (*free_sized_fn)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (free_sized_fn) free_sized_fn(malloc(64), 64);
    void (*free_aligned_sized_fn)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    if (free_aligned_sized_fn) free_aligned_sized_fn(aligned_alloc(64, 64), 64, 64);
}

static void case_calloc(void) {
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(opaque((size_t)1 << 62), 4) == NULL && errno == ENOMEM);
    void *z = calloc(0, 0);
    CHECK(z != NULL);
    free(z);
    /* Dirty memory is cleared when it comes back through calloc. */
    for (size_t n = 8; n < 300000; n = n * 3 + 5) {
        unsigned char *d = malloc(n);
        memset(d, 0xff, n);
        free(d);
        unsigned char *c = calloc(1, n);
        for (size_t i = 0; i < n; i++)
            if (c[i]) { CHECK(!"calloc memory not zero"); break; }
        free(c);
    }
}

static void case_realloc(void) {
    unsigned char *p = realloc(NULL, 100);           /* realloc(NULL, n) is malloc */
    CHECK(p != NULL);
    fill(p, 100, 7);
    p = realloc(p, 10000);
    CHECK(p && verify(p, 100, 7));
    fill(p, 10000, 8);
    p = realloc(p, 50);
    CHECK(p && verify(p, 50, 8));
    /* Up through the mmap threshold and beyond (mremap), contents kept. */
    fill(p, 50, 9);
    p = realloc(p, 1 << 20);
    CHECK(p && verify(p, 50, 9));
    fill(p, 1 << 20, 10);
    p = realloc(p, 8 << 20);
    CHECK(p && verify(p, 1 << 20, 10));
    p = realloc(p, 300000);
    CHECK(p && verify(p, 300000, 10));
    /* Failure leaves the block intact. */
    errno = 0;
    unsigned char *q = realloc(p, opaque(SIZE_MAX - 100));
    CHECK(q == NULL && errno == ENOMEM && verify(p, 300000, 10));
    /* realloc(p, 0) frees and returns NULL. */
    CHECK(realloc(q ? q : p, 0) == NULL);
    void *z = realloc(NULL, 0);                      /* realloc(NULL, 0) is malloc(0) */
    CHECK(z != NULL);
    free(z);
    /* reallocarray */
    int *a = reallocarray(NULL, 10, sizeof(int));
    CHECK(a != NULL);
    errno = 0;
    int *b = reallocarray(a, opaque(SIZE_MAX / 2), 4);
    CHECK(b == NULL && errno == ENOMEM);
    a = reallocarray(b ? b : a, 1000, sizeof(int));
    CHECK(a != NULL);
    free(a);
}

static void case_memalign(void) {
    size_t aligns[] = {1, 8, 16, 32, 64, 256, 4096, 65536, 1 << 20};
    for (unsigned i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        size_t al = aligns[i] < 16 ? 16 : aligns[i];
        void *p = memalign(aligns[i], opaque(100));
        CHECK(p && ((uintptr_t)p % al) == 0 && malloc_usable_size(p) >= 100);
        free(p);
        p = aligned_alloc(aligns[i], opaque(1000));
        CHECK(p && ((uintptr_t)p % al) == 0);
        free(p);
    }
    void *p = memalign(48, 10);                      /* rounded up to 64 */
    CHECK(p && ((uintptr_t)p & 63) == 0);
    free(p);
    p = aligned_alloc(3, 10);                        /* glibc 2.36: aligned_alloc is memalign */
    CHECK(p != NULL);
    free(p);
    errno = 0;
    CHECK(memalign(opaque(SIZE_MAX / 2 + 2), 16) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(4096, opaque(SIZE_MAX - 10000)) == NULL && errno == ENOMEM);
    /* posix_memalign */
    void *out = (void *)0x1234;
    CHECK(posix_memalign(&out, 0, 10) == EINVAL && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 3, 10) == EINVAL && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 12, 10) == EINVAL && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 24, 10) == EINVAL && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 8, 10) == 0 && out != (void *)0x1234);
    free(out);
    CHECK(posix_memalign(&out, 4096, 10) == 0 && ((uintptr_t)out & 4095) == 0);
    free(out);
    out = (void *)0x1234;
    CHECK(posix_memalign(&out, 64, opaque(SIZE_MAX - 1000)) == ENOMEM && out == (void *)0x1234);
    /* valloc / pvalloc */
    long ps = sysconf(_SC_PAGESIZE);
    p = valloc(10);
    CHECK(p && ((uintptr_t)p % ps) == 0);
    free(p);
    p = pvalloc(1);
    CHECK(p && ((uintptr_t)p % ps) == 0 && malloc_usable_size(p) >= (size_t)ps);
    free(p);
    errno = 0;
    CHECK(pvalloc(opaque(SIZE_MAX - 10)) == NULL && errno == ENOMEM);
}

static void case_shape(void) {
    /* Small requests come from the brk heap, large ones are mmapped. */
    void *small[100];
    for (int i = 0; i < 100; i++) {
        small[i] = malloc(opaque(16 + i * 37));
        CHECK(in_brk_heap(small[i]));
    }
    /* (Above 32 MiB, so that freeing it leaves the mmap threshold alone.) */
    void *big = malloc(opaque(40 << 20));
    CHECK(!in_brk_heap(big));
    for (int i = 0; i < 100; i++) free(small[i]);
    free(big);
    /* The dynamic threshold: freeing a 1 MiB mapping raises it, so the next one is heap. */
    void *m = malloc(opaque(1 << 20));
    CHECK(!in_brk_heap(m));
    free(m);
    m = malloc(opaque(1 << 20));
    CHECK(in_brk_heap(m));
    free(m);
    /* mallopt(M_MMAP_THRESHOLD) sets it by hand. */
    CHECK(mallopt(M_MMAP_THRESHOLD, 64 * 1024) == 1);
    m = malloc(opaque(4 << 20));
    CHECK(!in_brk_heap(m));
    free(m);
}

static void case_mallopt(void) {
    CHECK(mallopt(M_MXFAST, 161) == 0);
    CHECK(mallopt(M_MXFAST, -1) == 0);
    CHECK(mallopt(M_MXFAST, 64) == 1);
    CHECK(mallopt(M_MXFAST, 0) == 1);
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 20) == 1);
    CHECK(mallopt(M_TOP_PAD, 0) == 1);
    CHECK(mallopt(M_MMAP_MAX, 0) == 1);
    CHECK(mallopt(M_ARENA_MAX, 0) == 1);
    CHECK(mallopt(M_ARENA_MAX, 4) == 1);
    CHECK(mallopt(M_ARENA_TEST, 2) == 1);
    CHECK(mallopt(M_PERTURB, 0) == 1);
    CHECK(mallopt(999, 1) == 1);
    /* With M_MMAP_MAX 0 nothing is mmapped. */
    void *p = malloc(opaque(8 << 20));
    CHECK(p && in_brk_heap(p));
    free(p);
}

static void case_introspection(void) {
    struct mallinfo2 a = mallinfo2();
    void *blocks[100];
    for (int i = 0; i < 100; i++) blocks[i] = malloc(opaque(1000));
    void *big = malloc(opaque(2 << 20));
    struct mallinfo2 b = mallinfo2();
    CHECK(b.uordblks >= a.uordblks + 100 * 1000);
    CHECK(b.hblks == a.hblks + 1 && b.hblkhd >= a.hblkhd + (2 << 20));
    CHECK(b.arena == b.uordblks + b.fordblks);
    struct mallinfo old = mallinfo();
    CHECK((size_t)old.hblks == b.hblks);
    for (int i = 0; i < 100; i++) free(blocks[i]);
    free(big);
    struct mallinfo2 c = mallinfo2();
    CHECK(c.hblks == a.hblks && c.uordblks < b.uordblks);
    CHECK(c.ordblks >= 1 && c.keepcost > 0);
    /* malloc_trim hands free pages back. */
    CHECK(mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1);
    void *many[256];
    for (int i = 0; i < 256; i++) {
        many[i] = malloc(opaque(64 * 1024));
        memset(many[i], 1, 64 * 1024);
    }
    void *guard = malloc(100);
    for (int i = 0; i < 256; i++) free(many[i]);
    CHECK(malloc_trim(0) == 1);
    free(guard);
    /* malloc_info: glibc's XML, EINVAL for any option. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(malloc_info(1, f) == EINVAL);
    CHECK(malloc_info(0, f) == 0);
    fclose(f);
    CHECK(strncmp(buf, "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n", 42) == 0);
    CHECK(strstr(buf, "<total type=\"mmap\" count=\"") != NULL);
    CHECK(len > 10 && strcmp(buf + len - 10, "</malloc>\n") == 0);
    free(buf);
    /* malloc_stats: glibc's text on stderr. */
    char path[] = "/tmp/ptalloc-statsXXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    dup2(fd, 2);
    malloc_stats();
    fflush(stderr);
    dup2(saved, 2);
    char text[4096] = {0};
    pread(fd, text, sizeof text - 1, 0);
    close(fd);
    unlink(path);
    CHECK(strncmp(text, "Arena 0:\nsystem bytes     = ", 28) == 0);
    CHECK(strstr(text, "Total (incl. mmap):\nsystem bytes     = ") != NULL);
    CHECK(strstr(text, "\nmax mmap regions = ") && strstr(text, "\nmax mmap bytes   = "));
}

static void double_free_tcache(void) { void *p = malloc(40); free(p); free(p); }
/* Run with glibc.malloc.tcache_count=0: both frees reach the fastbin. */
static void double_free_fasttop(void) { void *p = malloc(40); free(p); free(p); }
static void double_free_normal(void) { void *p = malloc(2000); sink = malloc(100); free(p); free(p); }
static void free_misaligned(void) { char *p = malloc(100); free(p + 8); }
static void free_bad_size(void) {
    volatile size_t *p = malloc(64);
    p[1] = 0x11; /* a fake chunk header inside the block: size 16 */
    free((void *)(p + 2));
}
static void realloc_misaligned(void) { char *p = malloc(100); sink = realloc(p + 4, 200); }

/* An overflow of 32 bytes past a block next to top empties top's header; the next growth
 * of the heap notices. Run in a fresh process, so that the block comes from top. */
static void overflow_into_top(size_t n) {
    char *p = malloc(n);
    memset(p, 0, n + 32);
    sink = malloc(100000);
    sink = malloc(300000);
}
static void overflow_into_top_small(void) { overflow_into_top(8); }
static void overflow_into_top_page(void) { overflow_into_top(4096); }
static void case_corruption_top(void) {
    const char *line = "Fatal glibc error: malloc assertion failure in sysmalloc: (old_top == initial_top "
                       "(av) && old_size == 0) || ((unsigned long) (old_size) >= MINSIZE && prev_inuse "
                       "(old_top) && ((unsigned long) old_end & (pagesize - 1)) == 0)";
    expect_abort(overflow_into_top_small, line);
    expect_abort(overflow_into_top_page, line);
}

/* Run with GLIBC_TUNABLES=glibc.malloc.tcache_count=0 (see the test). */
static void case_corruption_fastbin(void) {
    expect_abort(double_free_fasttop, "double free or corruption (fasttop)");
}

static void double_free_after_full_bin(void) {
    void *fill[7], *p = malloc(40);
    for (int i = 0; i < 7; i++) fill[i] = malloc(40);
    for (int i = 0; i < 7; i++) free(fill[i]);
    free(p);
    free(p);
}

static void case_corruption(void) {
    expect_abort(double_free_tcache, "free(): double free detected in tcache 2");
    /* glibc's bin is full after 7: the chunk goes to a fastbin, where the second free is caught.
     * ptalloc's bins of small chunks hold more, and catch it in the cache instead. */
    expect_abort_either(double_free_after_full_bin, "double free or corruption (fasttop)",
                        "free(): double free detected in tcache 2");
    expect_abort(double_free_normal, "double free or corruption (!prev)");
    expect_abort(free_misaligned, "free(): invalid pointer");
    expect_abort(free_bad_size, "free(): invalid size");
    expect_abort(realloc_misaligned, "realloc(): invalid pointer");
}

/* Threads sharing a table: every block is filled with its own pattern, checked and freed
 * by whichever thread replaces it. */
#define SLOTS 4096
static struct { pthread_mutex_t lock; unsigned char *p; size_t n; unsigned seed; } table[SLOTS];
static int thread_errors;

static void *churn(void *arg) {
    unsigned long r = (unsigned long)arg * 2654435761u + 1;
    for (int i = 0; i < 100000; i++) {
        r = r * 6364136223846793005ul + 1442695040888963407ul;
        int s = (r >> 33) % SLOTS;
        size_t n = (r >> 20) % 100 < 97 ? (r >> 8) % 600 : (r >> 8) % 300000;
        pthread_mutex_lock(&table[s].lock);
        if (table[s].p) {
            if (!verify(table[s].p, table[s].n, table[s].seed)) __atomic_add_fetch(&thread_errors, 1, __ATOMIC_RELAXED);
            if ((r >> 40) % 4 == 0) {
                unsigned char *q = realloc(table[s].p, n + 1);
                size_t keep = table[s].n < n + 1 ? table[s].n : n + 1;
                if (!q || !verify(q, keep, table[s].seed)) __atomic_add_fetch(&thread_errors, 1, __ATOMIC_RELAXED);
                table[s].p = q;
                table[s].n = n + 1;
                table[s].seed = (unsigned)r;
                fill(q, n + 1, (unsigned)r);
                pthread_mutex_unlock(&table[s].lock);
                continue;
            }
            errno = 77; /* free keeps errno, even when it waits for a contended lock */
            free(table[s].p);
            if (errno != 77) __atomic_add_fetch(&thread_errors, 1, __ATOMIC_RELAXED);
        }
        table[s].p = malloc(n);
        table[s].n = n;
        table[s].seed = (unsigned)r;
        fill(table[s].p, n, (unsigned)r);
        pthread_mutex_unlock(&table[s].lock);
    }
    return NULL;
}

static void case_threads(void) {
    for (int i = 0; i < SLOTS; i++) pthread_mutex_init(&table[i].lock, NULL);
    pthread_t t[8];
    for (long i = 0; i < 8; i++) pthread_create(&t[i], NULL, churn, (void *)i);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    CHECK(thread_errors == 0);
    for (int i = 0; i < SLOTS; i++) {
        if (table[i].p) CHECK(verify(table[i].p, table[i].n, table[i].seed));
        free(table[i].p);
        table[i].p = NULL;
    }
}

/* fork() while other threads allocate and use stdio: no deadlock, a working child. */
static volatile int stop;

static void *allocator_loop(void *arg) {
    (void)arg;
    void *held[64] = {0};
    for (unsigned i = 0; !stop; i++) {
        free(held[i % 64]);
        held[i % 64] = malloc(16 + (i * 37) % 5000);
    }
    for (int i = 0; i < 64; i++) free(held[i]);
    return NULL;
}

static void *stdio_loop(void *arg) {
    (void)arg;
    FILE *f = fopen("/proc/self/maps", "r");
    char *line = NULL;
    size_t cap = 0;
    while (!stop) {
        if (getline(&line, &cap, f) < 0) rewind(f);
        fflush(NULL);
    }
    free(line);
    fclose(f);
    return NULL;
}

static void case_fork(void) {
    pthread_t t[4];
    pthread_create(&t[0], NULL, allocator_loop, NULL);
    pthread_create(&t[1], NULL, allocator_loop, NULL);
    pthread_create(&t[2], NULL, stdio_loop, NULL);
    pthread_create(&t[3], NULL, stdio_loop, NULL);
    for (int i = 0; i < 200; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            /* The child may allocate and print right away. */
            char *s = malloc(1000);
            snprintf(s, 1000, "child %d", i);
            char *d = strdup(s);
            void *big = malloc(1 << 20);
            int ok = d && big && strcmp(d, s) == 0;
            free(big);
            free(d);
            free(s);
            FILE *f = fopen("/dev/null", "w");
            fprintf(f, "%d\n", ok);
            fclose(f);
            _exit(ok ? 0 : 1);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
}

static void case_rlimit_as(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    CHECK(fscanf(f, "%ld", &pages) == 1);
    fclose(f);
    struct rlimit lim = {(rlim_t)pages * sysconf(_SC_PAGESIZE) + (256 << 20), RLIM_INFINITY};
    CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
    errno = 0;
    CHECK(malloc(opaque(1ul << 30)) == NULL && errno == ENOMEM);
    void **held = malloc(10000 * sizeof *held);
    int n = 0;
    for (; n < 10000; n++) {
        errno = 0;
        held[n] = malloc(1 << 20);
        if (!held[n]) break;
    }
    CHECK(n > 50 && n < 10000 && errno == ENOMEM);
    while (n > 0) free(held[--n]);
    for (int i = 0; i < 50; i++) {                   /* it recovers */
        held[i] = malloc(1 << 20);
        CHECK(held[i] != NULL);
    }
    for (int i = 0; i < 50; i++) free(held[i]);
    free(held);
}

static void *short_life(void *arg) {
    void *p[20];
    for (int i = 0; i < 20; i++) p[i] = malloc(16 + i * 40 + (long)arg % 7);
    for (int i = 0; i < 20; i++) free(p[i]);
    return NULL;
}

static void case_thread_churn(void) {
    long before = 0;
    for (int i = 0; i < 20000; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, short_life, (void *)(long)i) == 0);
        pthread_join(t, NULL);
        if (i == 1000) before = rss_kib();
    }
    long after = rss_kib();
    /* Each exiting thread hands its cache back: memory stays flat. */
    if (after > before + 16 * 1024) {
        fprintf(stderr, "RSS grew from %ld to %ld KiB over 19000 threads\n", before, after);
        failures++;
    }
}

/* With mmap_max=0 and perturb=PERTURB set in the environment: nothing is mmapped, fresh
 * blocks are filled with PERTURB ^ 0xff. The settings must hold even though the dynamic
 * loader may have called malloc before the environment was set up. */
static void check_no_mmap_and_perturb(int perturb) {
    void *big = malloc(opaque(8 << 20));
    CHECK(big && in_brk_heap(big));
    free(big);
    unsigned char *p = malloc(opaque(100));
    int filled = 1;
    for (int i = 0; i < 100; i++) filled &= p[i] == (perturb ^ 0xff);
    CHECK(filled);
    free(p);
}

/* Run with GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.perturb=165 (see the test). */
static void case_tunables(void) {
    check_no_mmap_and_perturb(165);
}

/* Same with the MALLOC_*_ names: MALLOC_MMAP_MAX_=0 MALLOC_PERTURB_=90. */
static void case_env_aliases(void) {
    check_no_mmap_and_perturb(90);
}

/* Threads whose pthread key destructors allocate after the allocator's own exit hook ran:
 * those late allocations must not leave each thread's arena attached forever. glibc ends
 * with the main arena and one thread arena, reused by each thread in turn. */
static pthread_key_t late_key;

static void late_destructor(void *v) {
    free(v);
    free(malloc(100));
    free(malloc(3000));
}

static void *late_thread(void *arg) {
    (void)arg;
    pthread_setspecific(late_key, malloc(10));
    free(malloc(1000));
    return NULL;
}

static void case_exit_destructors(void) {
    free(malloc(1)); /* the allocator's thread key comes first, so its destructor runs first */
    CHECK(pthread_key_create(&late_key, late_destructor) == 0);
    for (int i = 0; i < 40; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, late_thread, NULL) == 0);
        pthread_join(t, NULL);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f && malloc_info(0, f) == 0);
    fclose(f);
    int heaps = 0;
    for (char *s = buf; (s = strstr(s, "<heap nr=")); s++) heaps++;
    free(buf);
    if (heaps > 2) {
        fprintf(stderr, "%d arenas after 40 threads, one at a time\n", heaps);
        failures++;
    }
}

/* A single-threaded process forks from a signal handler that may interrupt malloc. */
static volatile sig_atomic_t forks_done;

static void fork_in_handler(int sig) {
    (void)sig;
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) {
        int status;
        waitpid(pid, &status, 0);
        forks_done++;
    }
}

static void case_signal_fork(void) {
    signal(SIGALRM, fork_in_handler);
    struct itimerval t = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_REAL, &t, NULL);
    void *held[256] = {0};
    for (unsigned i = 0; forks_done < 100; i++) {
        free(held[i % 256]);
        held[i % 256] = malloc(16 + (i * 37) % 3000);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int i = 0; i < 256; i++) free(held[i]);
    CHECK(forks_done >= 100);
}

static void case_interposed(void) {
    Dl_info info;
    void *fn = dlsym(RTLD_DEFAULT, "malloc");
    CHECK(dladdr(fn, &info) != 0);
    const char *want = getenv("EXPECT_MALLOC_FROM");
    if (want && !strstr(info.dli_fname, want)) {
        fprintf(stderr, "malloc comes from %s, expected %s\n", info.dli_fname, want);
        failures++;
    }
    printf("%s\n", info.dli_fname);
}

static const struct { const char *name; void (*fn)(void); } cases[] = {
    {"malloc", case_malloc},       {"free", case_free},
    {"calloc", case_calloc},       {"realloc", case_realloc},
    {"memalign", case_memalign},   {"shape", case_shape},
    {"mallopt", case_mallopt},     {"introspection", case_introspection},
    {"corruption", case_corruption}, {"corruption_fastbin", case_corruption_fastbin},
    {"corruption_top", case_corruption_top},
    {"threads", case_threads},
    {"fork", case_fork},           {"rlimit_as", case_rlimit_as},
    {"thread_churn", case_thread_churn}, {"tunables", case_tunables},
    {"env_aliases", case_env_aliases}, {"signal_fork", case_signal_fork},
    {"exit_destructors", case_exit_destructors}, {"interposed", case_interposed},
};

int main(int argc, char **argv) {
    int n = sizeof cases / sizeof *cases;
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (int i = 0; i < n; i++) printf("%s\n", cases[i].name);
        return 0;
    }
    for (int i = 0; argc == 2 && i < n; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            return failures ? 1 : 0;
        }
    }
    fprintf(stderr, "usage: conformance list | CASE\n");
    return 2;
}
