// Sleeps until killed; answers nothing. Built statically at test time (gcc -static) to check
// that attach refuses a statically linked program and leaves it running.
#include <unistd.h>

int main(void) {
    for (;;) pause();
}
