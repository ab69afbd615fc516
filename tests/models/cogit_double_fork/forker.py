"""Forks; the child answers each message in .inbox with "hello <message>" in .outbox and prints as it
goes, the parent just prints now and then."""

import os
import time


def main() -> None:
    is_child = os.fork() == 0
    pid = os.getpid()
    last = 0.0
    while True:
        if is_child and os.path.exists(".inbox"):
            with open(".inbox") as inbox:
                print(f"---> CHILD ({pid}) reading request", flush=True)
                s = inbox.read()
            os.unlink(".inbox")
            with open(".outbox", "w") as outbox:
                print(f"---> CHILD ({pid}) sending response", flush=True)
                outbox.write("hello " + s)
            open(".outbox.done", "w").close()
        if time.time() - last > 1:
            last = time.time()
            print(f"---> CHILD ({pid}) " + "here " * 20 if is_child else f"===> PARENT ({pid})", flush=True)
        time.sleep(0.01)


if __name__ == "__main__":
    main()
