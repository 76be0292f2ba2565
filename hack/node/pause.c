/* The pod sandbox's process: holds the pod's namespaces, reaps zombies (it is PID 1 when the
 * pod shares its PID namespace), exits on SIGINT/SIGTERM. Written here because no registry is
 * reachable to pull registry.k8s.io/pause; hack/node/images.sh builds it into an image. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction term = {.sa_handler = stop}, child = {.sa_handler = reap,
                                                         .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGINT, &term, NULL);
    sigaction(SIGTERM, &term, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;) pause();
    return 0;
}
