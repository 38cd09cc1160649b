// The search box and the sortable column headers: what the list shows, as a
// query's search and order. Typing waits for a pause before it asks the server
// for another window, so a word typed is one query, not one per letter.

const SEARCH_PAUSE_MS = 250;
const DIRECTION_TEXT = { ascending: "↑", descending: "↓" };

export class ListControls {
  #search = "";
  #order = "id";
  #timer = undefined;

  // `onChange({search, order})` is called whenever either changes.
  constructor(searchInput, sortButtons, onChange) {
    this.searchInput = searchInput;
    this.sortButtons = sortButtons;
    this.onChange = onChange;
    searchInput.addEventListener("input", () => {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.#setSearch(), SEARCH_PAUSE_MS);
    });
    // Enter, or the clear button of a search field: no reason to wait.
    searchInput.addEventListener("search", () => this.#setSearch());
    for (const button of sortButtons) {
      button.addEventListener("click", () => this.#sortBy(button.dataset.column));
    }
    this.#showOrder();
  }

  get search() {
    return this.#search;
  }

  get order() {
    return this.#order;
  }

  #setSearch() {
    clearTimeout(this.#timer);
    const search = this.searchInput.value.trim();
    if (search === this.#search) return;
    this.#search = search;
    this.onChange({ search, order: this.#order });
  }

  // A click on the column the list is sorted by turns its direction; on another, sorts by it ascending.
  #sortBy(column) {
    this.#order = this.#order === column ? `-${column}` : column;
    this.#showOrder();
    this.onChange({ search: this.#search, order: this.#order });
  }

  #showOrder() {
    for (const button of this.sortButtons) {
      const column = button.dataset.column;
      const sorted = this.#order.replace("-", "") === column;
      const direction = this.#order.startsWith("-") ? "descending" : "ascending";
      button.setAttribute("aria-pressed", String(sorted));
      button.querySelector(".direction").textContent = sorted ? DIRECTION_TEXT[direction] : "";
      button.title = sorted ? `Sorted by ${column}, ${direction}: click to reverse` : `Sort by ${column}`;
    }
  }
}
