/* N malloc(32) + free pairs through the C ABI, for instruction counting under callgrind:
 * `pair N`. Run with and without LD_PRELOAD=libptalloc.so for two values of N. */
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    volatile size_t size = 32;
    for (long i = 0; i < n; i++) {
        void *volatile p = malloc(size);
        free(p);
    }
    return 0;
}
