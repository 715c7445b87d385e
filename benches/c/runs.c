/* `runs SIZE K N`: N rounds of K mallocs of SIZE bytes, then K frees, oldest first. With K
 * longer than a thread cache's bin (or its ring of larger chunks), most pairs go through
 * the arena: for instruction counting under callgrind, with and without
 * LD_PRELOAD=libptalloc.so, for two values of N. */
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    size_t size = (size_t)atol(argv[1]);
    int k = atoi(argv[2]);
    long n = atol(argv[3]);
    if (k < 1 || k > 256) return 2;
    void *volatile p[256];
    for (long r = 0; r < n; r++) {
        for (int i = 0; i < k; i++) p[i] = malloc(size);
        for (int i = 0; i < k; i++) free(p[i]);
    }
    return 0;
}
