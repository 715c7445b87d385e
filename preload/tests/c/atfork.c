/* fork() in a threaded program whose fork handlers allocate, registered before the
 * allocator's own (see atfork_handlers.c): no deadlock, every handler runs, and both sides
 * go on allocating. Prints "ok". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern int atfork_prepared, atfork_parented, atfork_childed;
static volatile int stop;

static void *worker(void *arg) {
    size_t n = (size_t)arg;
    while (!stop) {
        void *p = malloc(n);
        void *q = malloc(n * 3 + 1000);
        if (p) memset(p, 1, n);
        free(q);
        free(p);
    }
    return NULL;
}

int main(void) {
    pthread_t t[4];
    for (size_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)(40 + 700 * i));
    for (int i = 0; i < 50; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            void *p = malloc(12345);
            if (!p || atfork_childed != 1) _exit(2);
            free(p);
            _exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child %d failed: status %d\n", i, st);
            return 1;
        }
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    if (atfork_prepared != 50 || atfork_parented != 50) {
        fprintf(stderr, "handlers ran %d/%d times\n", atfork_prepared, atfork_parented);
        return 1;
    }
    puts("ok");
    return 0;
}
