// The users list as the page holds it: each user by id, and the ids in the
// server's order (by integer id), so that a change costs a lookup and an
// insertion, not a copy or a sort of the whole list.

// Ids are decimal strings of any length: order them as integers without
// converting them, which would round ids past 2^53.
function compareIds(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export class UserList {
  #byId = new Map();
  #ids = [];

  get size() {
    return this.#ids.length;
  }

  at(index) {
    return this.#byId.get(this.#ids[index]);
  }

  // Take a snapshot's users, which the server sends ordered by id.
  replace(users) {
    this.#byId = new Map(users.map((user) => [user.id, user]));
    this.#ids = users.map((user) => user.id);
  }

  // Apply a change set. A deleted id the list does not hold is ignored: that
  // user was created and deleted between two versions.
  apply(upserted, deleted) {
    for (const user of upserted) {
      if (!this.#byId.has(user.id)) this.#ids.splice(this.#position(user.id), 0, user.id);
      this.#byId.set(user.id, user);
    }
    for (const id of deleted) {
      if (this.#byId.delete(id)) this.#ids.splice(this.#position(id), 1);
    }
  }

  // Where `id` is, or would go, in the ordered ids: a binary search.
  #position(id) {
    let low = 0;
    let high = this.#ids.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareIds(this.#ids[middle], id) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
