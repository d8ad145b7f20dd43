/**
 * A stack of undo steps for multi-step setup: if step n fails, steps n-1..1 are undone in
 * reverse, so a half-made IOREQ server never outlives the error that stopped it.
 */
export class UndoStack {
  readonly #steps: Array<() => void> = [];

  /** Records how to undo the step that just succeeded. */
  push(undo: () => void): void {
    this.#steps.push(undo);
  }

  /** Undoes everything recorded, newest first; a failing undo does not stop the others. */
  unwind(): unknown[] {
    const errors: unknown[] = [];
    while (this.#steps.length > 0) {
      const step = this.#steps.pop() as () => void;
      try {
        step();
      } catch (error) {
        errors.push(error);
      }
    }
    return errors;
  }

  /** Forgets the steps: setup succeeded and the owner now releases them itself. */
  commit(): void {
    this.#steps.length = 0;
  }
}
