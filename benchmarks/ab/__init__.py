"""scripts/bench-ab: the same caller goals as real calls through the agentic `banking` flow and the
keypad `phone-tree`, judged by what the back end shows.

    goals    the caller goals and repair scenarios, generated from a fixed seed
    caller   the simulated caller: what it says or keys to each prompt it hears, and the in-process
             run that turns a goal into a script (turns, and what is heard before each)
    verify   whether a call did the goal (the demo bank's log, the store's end reason) and when
    runner   the real calls: SIPp through the sandbox Asterisk, one server per batch, under the lock
    report   per-flow figures, ab.json, ab.md and ab.png
"""
