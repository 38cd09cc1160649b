// Shows a list of any length by rendering only the rows in view, plus a
// margin. The <ul> is sized to the whole list, a spacer that gives its
// scroller the full scroll height, and its top padding puts the rendered rows
// where they belong. Every row has the same height, so which rows are in view
// is arithmetic, not layout. A row that stays in view is kept, not rebuilt: a
// change or a scroll touches only the rows it concerns, and an Edit link that
// has focus keeps it.

// Rendered ahead above and below the view, so that a quick scroll shows rows, not blank space.
const MARGIN_ROWS = 10;
// In rem, to follow the reader's font size. Chromium lays out at most about
// 33 million pixels: some 600,000 rows.
const ROW_HEIGHT_REM = 3.5;

export class VirtualList {
  #shown = new Map(); // id -> { row, user } of the rows rendered now

  // `fillRow(row, user)` writes a user into an <li>, empty or showing another user.
  constructor(scroller, list, users, fillRow) {
    this.scroller = scroller;
    this.list = list;
    this.users = users;
    this.fillRow = fillRow;
    list.style.setProperty("--row-height", `${ROW_HEIGHT_REM}rem`);
    scroller.addEventListener("scroll", () => this.render(), { passive: true });
    // The scroller's height follows the viewport, and the form above it.
    new ResizeObserver(() => this.render()).observe(scroller);
  }

  // Render the rows in view of the list as it is now.
  render() {
    const size = this.users.size;
    const [first, end] = this.#inView(size);
    this.list.style.height = `calc(${size} * var(--row-height))`;
    this.list.style.paddingTop = `calc(${first} * var(--row-height))`;
    const users = [];
    for (let index = first; index < end; index++) users.push(this.users.at(index));
    const ids = new Set(users.map((user) => user.id));
    for (const [id, shown] of this.#shown) {
      if (!ids.has(id)) {
        shown.row.remove();
        this.#shown.delete(id);
      }
    }
    // The rows kept are in list order already: only new rows are inserted.
    let next = this.list.firstElementChild;
    users.forEach((user, offset) => {
      const shown = this.#rowFor(user);
      shown.row.setAttribute("aria-posinset", first + offset + 1);
      shown.row.setAttribute("aria-setsize", size);
      if (shown.row === next) next = next.nextElementSibling;
      else this.list.insertBefore(shown.row, next);
    });
  }

  // The indexes of the first row to render and of the one after the last.
  #inView(size) {
    const rootFontSize = parseFloat(getComputedStyle(document.documentElement).fontSize);
    const rowHeight = ROW_HEIGHT_REM * rootFontSize;
    const { scrollTop, clientHeight } = this.scroller;
    const first = Math.floor(scrollTop / rowHeight) - MARGIN_ROWS;
    const end = Math.ceil((scrollTop + clientHeight) / rowHeight) + MARGIN_ROWS;
    const last = Math.min(size, end);
    // Past the end after deletions: the browser pulls the scroller back, and its scroll event renders.
    return [Math.min(Math.max(0, first), last), last];
  }

  #rowFor(user) {
    let shown = this.#shown.get(user.id);
    if (shown === undefined) {
      shown = { row: document.createElement("li"), user: null };
      this.#shown.set(user.id, shown);
    }
    if (shown.user !== user) {
      this.fillRow(shown.row, user);
      shown.user = user;
    }
    return shown;
  }
}
