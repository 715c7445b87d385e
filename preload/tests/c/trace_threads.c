/* Eight threads in a ring, each freeing the blocks of 777 bytes the thread before it
 * allocated (2000 each), for `ptalloc record`'s multi-threaded test. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define T 8
#define N 2000

static void *slots[T][N];

static void *worker(void *arg) {
    long i = (long)arg, from = (i + T - 1) % T;
    for (int k = 0; k < N; k++) {
        void *p = malloc(777);
        memset(p, (int)i, 777);
        __atomic_store_n(&slots[i][k], p, __ATOMIC_RELEASE);
        void *q;
        while (!(q = __atomic_load_n(&slots[from][k], __ATOMIC_ACQUIRE)))
            sched_yield();
        free(q);
        free(malloc(100));
    }
    return NULL;
}

int main(void) {
    pthread_t t[T];
    for (long i = 0; i < T; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 1;
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    return 0;
}
