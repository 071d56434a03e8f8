"""Jobs in flight at a provider, capped across every worker and replica: one slots workflow per integration.

A submit-poll task holds a slot from before its submit until its job is final at the provider. The slots
workflow (id ``job-slots-<task queue>``, on the integration's task queue) keeps who holds a slot and who waits,
and hands a free slot to the waiter with the most urgent priority, then to the fairness key (user) that holds
the fewest slots, then to who asked first. It is a workflow, so its state survives worker restarts; it continues
as new with that state, and ends itself once nobody has held or wanted a slot for ``IDLE`` (the next ask starts
it again).

- Ask: the task workflow runs the ``job_slots.ask`` activity, which signals the slots workflow, starting it if
  it is not running (signal-with-start), with the worker's cap. Without a cap it signals nothing: the task goes
  ahead at once. The slots workflow answers with the ``job_slot`` signal.
- Give back: the task workflow signals ``release``, also when it stops waiting (cancelled).
- A slot is never lost to a task that ends without giving it back (terminated, timed out, its workflow reset):
  while slots are held, every ``CHECK_EVERY`` the slots workflow asks Temporal which holders are no longer
  running (``job_slots.closed``) and takes their slots back; a grant to a workflow that has ended fails at once
  and the slot goes to the next waiter. A waiting task asks again every ``ASK_AGAIN``, so a slots workflow
  that was terminated by hand is started again and learns about it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    import msgspec

    from .tasks import TaskEnvelope
    from .workflow_kit import Step, execute, seconds_until

WORKFLOW = "JobSlotsWorkflow"
ASK_SIGNAL = "ask"
RELEASE_SIGNAL = "release"
# Sent to a task workflow: it holds a slot now.
GRANTED_SIGNAL = "job_slot"
ASK_ACTIVITY = "job_slots.ask"
CLOSED_ACTIVITY = "job_slots.closed"

CHECK_EVERY = timedelta(minutes=1)
IDLE = timedelta(minutes=10)
ASK_AGAIN = timedelta(minutes=10)
# Signals and grants add events; the run continues as new long before Temporal's history limits.
MAX_HISTORY_EVENTS = 5000

ASK = Step(
    ASK_ACTIVITY,
    start_to_close=timedelta(seconds=30),
    retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
    provider_call=False,
)
CLOSED = Step(
    CLOSED_ACTIVITY,
    start_to_close=timedelta(seconds=60),
    retry=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=3),
    provider_call=False,
)


def slots_workflow_id(task_queue: str) -> str:
    return f"job-slots-{task_queue}"


# --- types stored in Temporal history: they accept unknown fields -------------------------------------------


class SlotAsk(msgspec.Struct, frozen=True):
    """The ask activity's input: the task and its workflow, which will hold the slot."""

    task: TaskEnvelope
    holder: str


class Asked(msgspec.Struct, frozen=True):
    # False: no cap is set, the task needs no slot.
    capped: bool


class SlotRequest(msgspec.Struct, frozen=True):
    """What the slots workflow is asked: who wants a slot, how urgently, for whom; and the asking worker's cap,
    which becomes the cap from then on."""

    holder: str
    priority: int
    fairness_key: str
    limit: int


class Waiter(msgspec.Struct, frozen=True):
    holder: str
    priority: int
    fairness_key: str
    # Order of asking.
    seq: int


class Holder(msgspec.Struct, frozen=True):
    fairness_key: str


class SlotsState(msgspec.Struct):
    limit: int
    held: dict[str, Holder] = msgspec.field(default_factory=dict)
    waiting: list[Waiter] = msgspec.field(default_factory=list)
    seq: int = 0


def next_waiter(state: SlotsState) -> Waiter | None:
    """Who gets the next free slot: the most urgent priority, then the fairness key holding the fewest slots,
    then who asked first; None when no slot is free or nobody waits."""
    if not state.waiting or len(state.held) >= state.limit:
        return None
    holding = Counter(h.fairness_key for h in state.held.values())
    return min(state.waiting, key=lambda w: (w.priority, holding[w.fairness_key], w.seq))


@workflow.defn(name=WORKFLOW)
class JobSlotsWorkflow:
    @workflow.init
    def __init__(self, state: SlotsState) -> None:
        self._state = state
        self._changed = False
        # Holders that asked again while holding a slot (their workflow was reset): told again.
        self._retell: list[str] = []

    @workflow.signal(name=ASK_SIGNAL)
    def ask(self, request: SlotRequest) -> None:
        state = self._state
        state.limit = request.limit
        self._changed = True
        if request.holder in state.held:
            self._retell.append(request.holder)
        elif all(w.holder != request.holder for w in state.waiting):
            state.seq += 1
            state.waiting.append(Waiter(request.holder, request.priority, request.fairness_key, state.seq))

    @workflow.signal(name=RELEASE_SIGNAL)
    def release(self, holder: str) -> None:
        self._state.held.pop(holder, None)
        self._state.waiting = [w for w in self._state.waiting if w.holder != holder]
        self._changed = True

    @workflow.query
    def slots(self) -> SlotsState:
        return self._state

    @workflow.run
    async def run(self, state: SlotsState) -> None:
        while True:
            await self._grant()
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > MAX_HISTORY_EVENTS:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            busy = bool(self._state.held or self._state.waiting)
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=CHECK_EVERY if busy else IDLE)
            except TimeoutError:
                if busy:
                    await self._take_back_from_closed()
                elif not (self._state.held or self._state.waiting):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return
            self._changed = False

    async def _grant(self) -> None:
        granted, self._retell = self._retell, []
        while (waiter := next_waiter(self._state)) is not None:
            self._state.waiting.remove(waiter)
            self._state.held[waiter.holder] = Holder(waiter.fairness_key)
            granted.append(waiter.holder)
        results = await asyncio.gather(*(self._tell(holder) for holder in granted))
        if not all(results):
            # A slot of a task that has ended is free again.
            await self._grant()

    async def _tell(self, holder: str) -> bool:
        try:
            await workflow.get_external_workflow_handle(holder).signal(GRANTED_SIGNAL)
        except FailureError as err:
            workflow.logger.info("slot of %s taken back: it cannot be told (%s)", holder, err)
            self._state.held.pop(holder, None)
            return False
        return True

    async def _take_back_from_closed(self) -> None:
        holders = list(self._state.held)
        if not holders:
            return
        closed = await execute(CLOSED, holders, list[str])
        for holder in closed:
            workflow.logger.info("slot of %s taken back: its workflow is no longer running", holder)
            self._state.held.pop(holder, None)


SlotState = Literal["none", "asked", "held"]


class TaskSlot:
    """A task workflow's side: ask for a slot and wait for it, give it back. ``state`` is ``none`` (never
    asked, or no cap), ``asked`` (waiting, or the answer may be on its way) or ``held``; a continued run is
    handed ``held`` by the run before it."""

    def __init__(self, state: SlotState = "none") -> None:
        self.state: SlotState = state

    def granted(self) -> None:
        if self.state == "asked":
            self.state = "held"

    async def take(self, task: TaskEnvelope, until: float | None = None) -> None:
        """Wait for a slot (asking again every ``ASK_AGAIN``); returns at once when no cap is set. With ``until``
        (epoch seconds, the task's deadline) it stops waiting then, still ``asked``: ``give_back`` withdraws it."""
        holder = workflow.info().workflow_id
        self.state = "asked"
        while self.state == "asked":
            asked = await execute(ASK, SlotAsk(task, holder), Asked)
            if not asked.capped:
                self.state = "none"
                return
            wait = ASK_AGAIN if until is None else min(ASK_AGAIN, timedelta(seconds=max(seconds_until(until), 0)))
            try:
                await workflow.wait_condition(lambda: self.state != "asked", timeout=wait)
            except TimeoutError:
                if until is not None and seconds_until(until) <= 0:
                    return

    async def give_back(self) -> None:
        """Free the slot (or stop waiting for one). A slots workflow that cannot be reached needs no word: a
        new one never knew about this task."""
        if self.state == "none":
            return
        self.state = "none"
        try:
            await workflow.get_external_workflow_handle(slots_workflow_id(workflow.info().task_queue)).signal(
                RELEASE_SIGNAL, workflow.info().workflow_id
            )
        except FailureError as err:
            workflow.logger.info("job slot not given back: %s", err)
