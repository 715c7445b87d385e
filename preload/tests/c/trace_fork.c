/* A forked child that allocates (its own trace file) and an executed one (sh), for
 * `ptalloc record`'s test; prints both children's process ids. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    void *p = malloc(1234);
    pid_t forked = fork();
    if (forked == 0) {
        free(malloc(4321));
        exit(0);
    }
    waitpid(forked, NULL, 0);
    pid_t executed = fork();
    if (executed == 0) {
        execl("/bin/sh", "sh", "-c", "x=$(echo hello); test -n \"$x\"", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(executed, &status, 0);
    free(p);
    printf("%d %d\n", (int)forked, (int)executed);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
