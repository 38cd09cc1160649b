// The form that adds a user over the socket. Each submit carries a request id
// and is answered by the ack or the error frame with that id, whatever else
// the socket brings meanwhile: other clients' changes never touch the form.
// One submit at a time, so that the form's fields show one answer.

// crypto.randomUUID exists in secure contexts only (HTTPS, localhost); a page
// served over plain HTTP on another address takes 128 random bits as hex.
export function newRequestId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export class AddUserForm {
  #pending = null; // the create sent and not answered yet
  #live = false;

  // `send(command)` sends a command if the socket is open, and does nothing otherwise.
  constructor(form, send) {
    this.form = form;
    this.send = send;
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

  // Send the unanswered submit again, with its request id, on a new connection.
  // The server carries out a request id once: a create that the old connection
  // made is acknowledged again, one that it did not is made now.
  resend() {
    if (this.#pending) this.send(this.#pending);
  }

  // Take an ack or error frame. Those of other request ids are not this form's.
  answer(frame) {
    const sent = this.#pending;
    if (sent === null || frame.request_id !== sent.request_id) return;
    this.#pending = null;
    this.#updateButton();
    if (frame.type === "ack") {
      // Typing since the submit is the next user's, not this one's: leave it.
      const { name, email } = this.form.elements;
      if (name.value === sent.name && email.value === sent.email) this.form.reset();
      this.#showErrors({}, "");
    } else {
      this.#showErrors(frame.errors || {}, frame.message);
    }
  }

  #submit() {
    if (!this.#live || this.#pending) return;
    const { name, email } = this.form.elements;
    this.#pending = { action: "create", name: name.value, email: email.value, request_id: newRequestId() };
    this.#updateButton();
    this.send(this.#pending);
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
