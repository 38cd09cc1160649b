// The form that adds a user over the socket, through the client's create():
// it carries a request id and settles with the ack or the error frame of that
// id, whatever else the socket brings meanwhile, and is sent again after a
// reconnect until then. One submit at a time, so that the form's fields show
// one answer.

export class AddUserForm {
  #pending = null; // the fields of the create sent and not answered yet
  #live = false;

  // `live` is the page's LiveUsers.
  constructor(form, live) {
    this.form = form;
    this.live = live;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submit();
    });
  }

  // Whether the page's list is current: only then may the form be submitted.
  setLive(live) {
    this.#live = live;
    this.#updateButton();
  }

  async #submit() {
    if (!this.#live || this.#pending) return;
    const { name, email } = this.form.elements;
    const sent = (this.#pending = { name: name.value, email: email.value });
    this.#updateButton();
    try {
      await this.live.create(sent);
      // Typing since the submit is the next user's, not this one's: leave it.
      if (name.value === sent.name && email.value === sent.email) this.form.reset();
      this.#showErrors({}, "");
    } catch (error) {
      this.#showErrors(error.errors || {}, error.detail ?? error.message);
    } finally {
      this.#pending = null;
      this.#updateButton();
    }
  }

  #updateButton() {
    this.form.querySelector("button").disabled = !this.#live || this.#pending !== null;
  }

  // Show each field's errors next to it; anything else (no permission, too
  // many writes) in the form's own slot.
  #showErrors(errors, message) {
    let besideFields = false;
    for (const slot of this.form.querySelectorAll("[data-error-for]")) {
      const field = slot.dataset.errorFor;
      if (field === "form") continue;
      const text = (errors[field] || []).join(" ");
      besideFields ||= text !== "";
      slot.textContent = text;
      this.form.elements[field].setAttribute("aria-invalid", text ? "true" : "false");
    }
    this.form.querySelector('[data-error-for="form"]').textContent = besideFields ? "" : message;
  }
}
