/* Allocates 60,000 blocks and is killed by SIGKILL, for `ptalloc record`'s test. */
#include <signal.h>
#include <stdlib.h>

int main(void) {
    static void *keep[60000];
    for (int i = 0; i < 60000; i++)
        keep[i] = malloc(i % 200 + 1);
    raise(SIGKILL);
    return keep[0] == NULL;
}
