// Shows a list of any length by rendering only the rows in view, plus a
// margin, from a window of it: the users from place `offset` on. The <ul> is
// sized to the whole list (`total` rows), a spacer that gives its scroller the
// full scroll height, and its top padding puts the rendered rows where they
// belong. Every row has the same height, so which rows are in view is
// arithmetic, not layout. Rows in view that the window does not hold are
// placeholders, and the scroller is aria-busy until a window holding them
// comes: `wantRows(first, end)` asks for one. A row that stays in view is kept,
// not rebuilt: a change or a scroll touches only the rows it concerns, and an
// Edit link that has focus keeps it.

// Rendered ahead above and below the view, so that a quick scroll shows rows, not blank space.
const MARGIN_ROWS = 10;
// In rem, to follow the reader's font size. Chromium lays out at most about
// 33 million pixels: some 600,000 rows.
const ROW_HEIGHT_REM = 3.5;

export class VirtualList {
  #shown = new Map(); // id, or "@" + place for a placeholder -> { row, user } of the rows rendered now
  #window = { offset: 0, users: [], total: 0 };

  // `fillRow(row, user)` writes a user into an <li>, empty or showing another
  // user; `wantRows(first, end)` is told the places of the rows it would show.
  constructor(scroller, list, fillRow, wantRows) {
    this.scroller = scroller;
    this.list = list;
    this.fillRow = fillRow;
    this.wantRows = wantRows;
    list.style.setProperty("--row-height", `${ROW_HEIGHT_REM}rem`);
    scroller.addEventListener("scroll", () => this.render(), { passive: true });
    // The scroller's height follows the viewport, and the form above it.
    new ResizeObserver(() => this.render()).observe(scroller);
  }

  // How many rows fit in the view, margins included: the least a window should hold.
  get rowsInView() {
    return Math.ceil(this.scroller.clientHeight / this.#rowHeight()) + 2 * MARGIN_ROWS;
  }

  // Show a new window of the list: `users` from place `offset` of `total`.
  show(offset, users, total) {
    this.#window = { offset, users, total };
    this.render();
  }

  // Render the rows in view of the window held now.
  render() {
    const { offset, users, total } = this.#window;
    const [first, end] = this.#inView(total);
    this.list.style.height = `calc(${total} * var(--row-height))`;
    this.list.style.paddingTop = `calc(${first} * var(--row-height))`;
    const rows = [];
    for (let place = first; place < end; place++) {
      const user = users[place - offset] ?? null;
      rows.push({ key: user ? user.id : `@${place}`, user });
    }
    const keys = new Set(rows.map((row) => row.key));
    for (const [key, shown] of this.#shown) {
      if (!keys.has(key)) {
        shown.row.remove();
        this.#shown.delete(key);
      }
    }
    // The rows kept are in list order already: only new rows are inserted.
    let next = this.list.firstElementChild;
    rows.forEach(({ key, user }, index) => {
      const shown = this.#rowFor(key, user);
      shown.row.setAttribute("aria-posinset", first + index + 1);
      shown.row.setAttribute("aria-setsize", total);
      if (shown.row === next) next = next.nextElementSibling;
      else this.list.insertBefore(shown.row, next);
    });
    const waiting = rows.some(({ user }) => user === null);
    this.scroller.setAttribute("aria-busy", String(waiting));
    this.wantRows(first, end);
  }

  #rowHeight() {
    return ROW_HEIGHT_REM * parseFloat(getComputedStyle(document.documentElement).fontSize);
  }

  // The places of the first row to render and of the one after the last.
  #inView(total) {
    const rowHeight = this.#rowHeight();
    const { scrollTop, clientHeight } = this.scroller;
    const first = Math.floor(scrollTop / rowHeight) - MARGIN_ROWS;
    const end = Math.ceil((scrollTop + clientHeight) / rowHeight) + MARGIN_ROWS;
    const last = Math.min(total, end);
    // Past the end after deletions: the browser pulls the scroller back, and its scroll event renders.
    return [Math.min(Math.max(0, first), last), last];
  }

  #rowFor(key, user) {
    let shown = this.#shown.get(key);
    if (shown === undefined) {
      const row = document.createElement("li");
      if (user === null) row.className = "placeholder";
      shown = { row, user: undefined };
      this.#shown.set(key, shown);
    }
    if (user !== null && shown.user !== user) {
      this.fillRow(shown.row, user);
      shown.user = user;
    }
    return shown;
  }
}
