/* A library whose constructor registers fork handlers that allocate. Loaded as a dependency
 * of atfork.c, its constructor runs before a preloaded allocator's, so its prepare handler
 * runs *after* the allocator's (prepare handlers run in reverse order of registration):
 * while the allocator holds its locks for the fork. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int atfork_prepared, atfork_parented, atfork_childed;

static void churn(void) {
    /* Sizes past the thread cache, so the allocator's arena (not only its cache) is used. */
    static const size_t sizes[] = {48, 1500, 5000, 70000, 300000};
    void *p[5];
    for (int i = 0; i < 5; i++) {
        p[i] = malloc(sizes[i]);
        if (p[i]) memset(p[i], i, sizes[i]);
    }
    for (int i = 0; i < 5; i++) free(p[i]);
    void *q = realloc(malloc(100), 20000);
    free(q);
}

static void prepare(void) { churn(); atfork_prepared++; }
static void parent(void) { churn(); atfork_parented++; }
static void child(void) { churn(); atfork_childed++; }

__attribute__((constructor)) static void register_early(void) {
    pthread_atfork(prepare, parent, child);
}
