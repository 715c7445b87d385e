/* A known sequence of malloc-family calls for `ptalloc record`'s test. Between two fences
 * (malloc(31354) and its free) it makes each call once, then prints each call as
 * `ptalloc trace-stats --calls` writes it, in order. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char log_[8192];
static size_t at;

#define LOG(...) (at += snprintf(log_ + at, sizeof log_ - at, __VA_ARGS__))
#define X(p) ((unsigned long)(uintptr_t)(p))

int main(void) {
    void *fence = malloc(31354);
    LOG("malloc(31354) = 0x%lx\n", X(fence));
    free(fence);
    LOG("free(0x%lx)\n", X(fence));

    void *a = malloc(100);
    LOG("malloc(100) = 0x%lx\n", X(a));
    void *b = calloc(10, 30);
    LOG("calloc(10, 30) = 0x%lx\n", X(b));
    void *a2 = realloc(a, 5000);
    LOG("realloc(0x%lx, 5000) = 0x%lx\n", X(a), X(a2));
    void *c = memalign(64, 200);
    LOG("memalign(64, 200) = 0x%lx\n", X(c));
    void *d = NULL;
    int r = posix_memalign(&d, 128, 300);
    LOG("posix_memalign(128, 300) = 0x%lx (%d)\n", X(d), r);
    void *e = aligned_alloc(256, 512);
    LOG("aligned_alloc(256, 512) = 0x%lx\n", X(e));
    void *f = valloc(1000);
    LOG("valloc(1000) = 0x%lx\n", X(f));
    void *g = pvalloc(1000);
    LOG("pvalloc(1000) = 0x%lx\n", X(g));
    void *h = malloc(1 << 20);
    memset(h, 1, 1 << 20);
    LOG("malloc(1048576) = 0x%lx\n", X(h));
    void *h2 = realloc(h, 4 << 20);
    LOG("realloc(0x%lx, 4194304) = 0x%lx\n", X(h), X(h2));
    free(NULL);
    LOG("free(0x0)\n");
    void *huge = malloc(SIZE_MAX - 4096);
    LOG("malloc(%zu) = 0x%lx\n", (size_t)(SIZE_MAX - 4096), X(huge));
    void *over = reallocarray(NULL, SIZE_MAX / 2, 4);
    LOG("reallocarray(0x0, %zu, 4) = 0x%lx\n", SIZE_MAX / 2, X(over));
    void *z = realloc(b, 0);
    LOG("realloc(0x%lx, 0) = 0x%lx\n", X(b), X(z));
    void *ptrs[] = {a2, c, d, e, f, g, h2};
    for (unsigned i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) {
        free(ptrs[i]);
        LOG("free(0x%lx)\n", X(ptrs[i]));
    }
    int t = malloc_trim(0);
    LOG("malloc_trim(0) = %d\n", t);

    fence = malloc(31354);
    LOG("malloc(31354) = 0x%lx\n", X(fence));
    free(fence);
    LOG("free(0x%lx)\n", X(fence));
    fputs(log_, stdout);
    return 0;
}
