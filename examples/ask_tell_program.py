"""Ask/tell with the evaluation done by a program outside Python, through its standard
input and output.

The evaluator here is an ``awk`` program (any program would do: a simulator, a game
engine, a lab's control software): it reads one solution per line (the joint angles of
a planar arm) and answers one line ``fitness x y``. qdkit asks for a batch, writes it
to the program, reads the answers back and tells them.

python examples/ask_tell_program.py --iterations 200
"""

import argparse
import os
import shutil
import subprocess

import numpy as np

import qdkit
from emitters import iso_line

#: The planar arm in awk: links of length 1/n, fitness minus the variance of the angles,
#: descriptor the end effector (x, y). A line that is not n numbers gets "nan nan nan".
ARM_AWK = r"""
{
    if (NF != n) { print "nan nan nan"; fflush(); next }
    a = 0; x = 0; y = 0; s = 0; s2 = 0
    for (i = 1; i <= NF; i++) {
        a += $i; x += cos(a) / n; y += sin(a) / n; s += $i; s2 += $i * $i
    }
    m = s / n
    printf "%.9g %.9g %.9g\n", -(s2 / n - m * m), x, y
    fflush()
}
"""


class Program:
    """A long-running evaluator: one line out per line in."""

    def __init__(self, argv: list[str]):
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def evaluate(self, solutions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        answers = []
        for row in solutions:  # one at a time: the pipe never fills up
            self.process.stdin.write(" ".join(f"{v:.9g}" for v in row) + "\n")
            answers.append([float(v) for v in self.process.stdout.readline().split()])
        answers = np.asarray(answers, np.float64)
        return answers[:, 0], answers[:, 1:]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dof", type=int, default=8)
    args = parser.parse_args()

    awk = shutil.which("awk")
    if awk is None:
        raise SystemExit("this example needs awk on the PATH")
    # mawk (Debian's awk) reads a pipe in blocks unless told to read line by line
    interactive = ["-W", "interactive"] if "mawk" in os.path.realpath(awk) else []
    program = Program([awk, *interactive, "-v", f"n={args.dof}", ARM_AWK])

    archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=[-1, -1], upper=[1, 1], example_genotype=np.zeros(args.dof, np.float32)
    )
    emitter = iso_line(batch_size=args.batch_size, iso_sigma=0.01, line_sigma=0.1, lower=-np.pi, upper=np.pi)
    initial = np.random.default_rng(0).uniform(-np.pi, np.pi, (args.batch_size, args.dof)).astype(np.float32)
    scheduler = qdkit.Scheduler(archive, emitter, initial=initial, qd_offset=-(np.pi**2))
    try:
        for _ in range(args.iterations + 1):  # the initial population, then the iterations
            solutions = scheduler.ask()
            row = scheduler.tell(*program.evaluate(solutions))
    finally:
        program.close()
    print(f"QD-score {float(row['qd_score']):.1f}, coverage {float(row['coverage']):.1%}, "
          f"{int(row['num_elites'])} elites, {int(row['num_invalid'])} invalid rows in the last batch")  # fmt: skip


if __name__ == "__main__":
    main()
