"""Attribution accuracy under concurrency, for `make bench`.

Six async requests, each burning CPU in its own function in 1 ms slices with
`await asyncio.sleep(0)` between them, run at once on one event loop, so the
loop switches between them every millisecond. Every sample charged to a
request is judged right (its stack shows that request's function) or wrong
(another's). Samples the recorder refused to charge (the thread switched
requests during the walk, or the stack was torn) are reported as a share.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fixtures import attribution
from fixtures.concurrency_app import BURNERS

ROUNDS = 3


def main() -> None:
    functions = {f"burn_{name}" for name in BURNERS}
    paths = [f"/burn/{name}?ms=600" for name in sorted(BURNERS)]
    right = wrong = neither = switched = torn = 0
    with tempfile.TemporaryDirectory(prefix="timeglass-accuracy-") as work:
        with attribution.recording(Path(work)) as (client, recorded):
            client.get("/health")
            for _ in range(ROUNDS):
                attribution.together(client, paths)
        for row in recorded.rows():
            path = str(row["path"])
            if not path.startswith("/burn/"):
                continue
            judged = recorded.judge(row, "burn_" + path.rsplit("/", 1)[1], functions)
            right += judged.own
            wrong += judged.other
            neither += judged.neither
            switched += int(row["switched_samples"])
            torn += int(row["torn_samples"])
    charged = right + wrong + neither
    seen = charged + switched + torn
    print(
        f"\nAttribution accuracy: {len(paths)} concurrent async requests switching every 1 ms,"
        f" {ROUNDS} rounds\n"
    )
    print(f"  samples charged to requests     {charged:6d}")
    print(f"    showing their own function    {right:6d}")
    print(f"    showing another's function    {wrong:6d}")
    print(f"    showing neither (loop, glue)  {neither:6d}")
    if right + wrong:
        print(f"  charged to the right request    {100 * right / (right + wrong):6.2f}%")
    if seen:
        print(f"  not charged: switched mid-walk  {100 * switched / seen:6.2f}% of samples")
        print(f"  not charged: torn stack         {100 * torn / seen:6.2f}% of samples")


if __name__ == "__main__":
    main()
