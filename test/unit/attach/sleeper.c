// Minimal target for the 32-bit and static builds: it only has to stay alive.
#include <unistd.h>
int main(void) {
    for (int i = 0; i < 600; ++i) sleep(1);
    return 0;
}
