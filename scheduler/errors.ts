/** Base class of every scheduler error. */
export class SchedulerError extends Error {
  override name = 'SchedulerError'
}

/** The planner's input is malformed: negative sizes, no layers, a speed of zero, duplicate ids... */
export class InvalidPlanInputError extends SchedulerError {
  override name = 'InvalidPlanInputError'
}

/** A `--stages` string cannot be parsed, or its ranges do not cover the model's layers exactly once. */
export class InvalidStagesError extends SchedulerError {
  override name = 'InvalidStagesError'
}

/** The privacy mode forbids the plan: the coordinator must keep the first layer. */
export class PrivacyViolationError extends SchedulerError {
  override name = 'PrivacyViolationError'
}

/** Where memory is missing: one node that would need more than it offers, or layers no node can hold. */
export interface Shortfall {
  /** the node short of memory, or null when the layers fit on no node at all */
  nodeId: string | null
  /** what is placed or unplaced there, e.g. "layers 20-27" */
  what: string
  neededBytes: number
  availableBytes: number
  missingBytes: number
}

/** The model does not fit in the memory the members offer; `missingBytes` says how much more is needed. */
export class PlanDoesNotFitError extends SchedulerError {
  override name = 'PlanDoesNotFitError'

  constructor (message: string, readonly missingBytes: number, readonly shortfalls: readonly Shortfall[]) {
    super(message)
  }
}

/** `--placement` or `--replicas` is malformed, or contradicts another override (`--stages`). */
export class InvalidPlacementError extends SchedulerError {
  override name = 'InvalidPlacementError'
}
