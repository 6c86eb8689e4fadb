// The room page: live messages through the client library, posting without a reload, older
// messages on demand. The page works without this script (plain form posts, links for older
// messages); with it, the same markup comes alive. Text from the server is only ever inserted as
// text nodes, never as HTML.
import { connect } from "/assets/roomcast.js";

const chat = document.getElementById("chat");
const $ = (id) => document.getElementById(id);

/** Consecutive messages by one person within this long share one header. */
const GROUP_WITHIN_MS = 5 * 60 * 1000;
/** The reactions offered by the picker (any emoji may come from elsewhere). */
const PICKER = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
/** How often to say one is typing while one is. */
const TYPING_EVERY_MS = 3000;
/** Marking what is seen read happens at most this often. */
const MARK_READ_EVERY_MS = 1000;
/** How often the sidebar's unread counts are refreshed. */
const UNREAD_EVERY_MS = 20000;
/** Files the page shows as images (the server serves every other file as a download). */
const INLINE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/** How much of a quoted message a reply shows. */
const QUOTE_CHARS = 80;

// ---- Text: links and code, made from text nodes only ------------------------------------------

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/** A link's URL without trailing punctuation (a closing bracket stays if it has a partner). */
function trimUrl(url) {
  for (;;) {
    const last = url.at(-1);
    if (".,;:!?'\"".includes(last)) url = url.slice(0, -1);
    else if (last === ")" && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) url = url.slice(0, -1);
    else return url;
  }
}

/** Text with http(s) links made clickable; any other scheme (javascript:, data:) stays text. */
function linkify(text, into) {
  let at = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const url = trimUrl(match[0]);
    let parsed = null;
    try { parsed = new URL(url); } catch { /* not a URL after all */ }
    if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) continue;
    into.append(text.slice(at, match.index));
    const a = document.createElement("a");
    a.href = parsed.href;
    a.textContent = url;
    a.rel = "noopener noreferrer nofollow";
    a.target = "_blank";
    into.append(a);
    at = match.index + url.length;
  }
  into.append(text.slice(at));
}

/** A message's text: ```fenced``` blocks and `inline` code set apart, links clickable. */
function formatText(text) {
  const out = document.createDocumentFragment();
  const parts = text.split(/```(?:[\w+-]*\n)?([\s\S]*?)```/g);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = part.replace(/\n$/, "");
      pre.append(code);
      out.append(pre);
      return;
    }
    part.split(/`([^`\n]+)`/g).forEach((piece, j) => {
      if (j % 2 === 1) {
        const code = document.createElement("code");
        code.textContent = piece;
        out.append(code);
      } else {
        linkify(piece, out);
      }
    });
  });
  return out;
}

// ---- Time ----------------------------------------------------------------------------------------

/** `812 B`, `12.5 KB`, `3.1 MB`, as the server writes sizes. */
function sizeWords(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} KB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

const clock = (d) => d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const full = (d) => d.toLocaleString([], { dateStyle: "full", timeStyle: "long" });
const dayKey = (d) => `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
function dayWords(d) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(d) === dayKey(today)) return "Today";
  if (dayKey(d) === dayKey(yesterday)) return "Yesterday";
  return d.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year: "numeric" });
}

// ---- The page --------------------------------------------------------------------------------------

/** A user's name, from their id (`name~tag`): ids tell people apart, names are shown. */
const nameOf = (id) => id.split("~")[0];

function start() {
  const roomId = chat.dataset.room;
  const me = chat.dataset.user; // the reader's id
  const list = $("messages");
  const scroller = $("scroller");
  const edge = $("edge");
  const status = $("status");
  const form = $("composer");
  const textInput = $("text");
  const errorBox = $("error");
  const notices = $("notices");
  const jump = $("jump");
  const presentList = $("present");
  const count = $("count");
  const live = chat.dataset.live === "true";
  const moderates = chat.dataset.moderates === "true";
  const composing = $("composing");
  const typingLine = $("typing");
  const signIn = () => location.assign(`/sign-in?next=${encodeURIComponent(location.pathname)}`);

  /** What is shown, oldest first: {seq, user, at: Date, node}. */
  const shown = [];
  let firstShown = Number(chat.dataset.firstShown);
  let firstHeld = Number(chat.dataset.firstHeld);
  let unseen = 0;

  // The scroller is a reversed column, so it opens at the newest message (with or without
  // this script) and scrollTop counts up from the bottom.
  const fromBottom = () => Math.abs(scroller.scrollTop);
  const atBottom = () => fromBottom() < 60;
  const toBottom = () => { scroller.scrollTop = 0; unseen = 0; jump.hidden = true; };

  function notice(text, { lasting = false } = {}) {
    const p = document.createElement("p");
    p.className = "notice";
    p.textContent = text;
    notices.append(p);
    while (notices.children.length > 3) notices.firstElementChild.remove();
    if (!lasting) setTimeout(() => p.remove(), 10000);
  }

  /** A separator for the day of `at`. */
  function daySeparator(at) {
    const li = document.createElement("li");
    li.className = "day";
    const span = document.createElement("span");
    span.textContent = dayWords(at);
    li.append(span);
    return li;
  }

  /** The shown message `seq`, if it is. */
  const bySeq = (seq) => shown.find((e) => e.seq === seq);

  /** A message's list item, grouped under `previous` (the message shown just before it).
   * `m` is a message as the server sends it ({seq, user, text, sent_at, reply_to?,
   * edited_at?, deleted?, reactions?}). */
  function messageNode(m, previous) {
    const at = new Date(m.sent_at);
    const li = document.createElement("li");
    li.className = "message" + (m.user_id === me ? " mine" : "");
    li.id = `m${m.seq}`;
    li.dataset.seq = m.seq;
    li.dataset.user = m.user_id;
    const meta = document.createElement("div");
    meta.className = "meta";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = nameOf(m.user_id);
    const time = document.createElement("time");
    time.dateTime = m.sent_at;
    time.textContent = clock(at);
    time.title = full(at);
    meta.append(who, " ", time);
    li.append(meta);
    const entry = {
      seq: m.seq, user: m.user_id, at, node: li, text: m.text, replyTo: m.reply_to ?? null,
      edited: Boolean(m.edited_at), deleted: Boolean(m.deleted),
      reactions: new Map((m.reactions || []).map((r) => [r.emoji, [...r.user_ids]])),
      files: m.attachments || [],
    };
    renderBody(entry);
    group(entry, previous);
    return entry;
  }

  /** What `entry` says now: the quote it answers, its text (or that it was deleted), whether
   * it was edited, its reactions, and what the reader may do with it. */
  function renderBody(entry) {
    const li = entry.node;
    li.replaceChildren(li.querySelector(".meta"));
    li.classList.toggle("deleted", entry.deleted);
    if (entry.replyTo) {
      const quote = document.createElement("p");
      quote.className = "quote";
      const answered = bySeq(entry.replyTo);
      quote.textContent = `Replying to ${answered ? quoted(answered) : `message ${entry.replyTo}`}`;
      li.append(quote);
    }
    const text = document.createElement("div");
    text.className = "text";
    if (entry.deleted) {
      text.classList.add("tombstone");
      text.textContent = "This message was deleted.";
      li.append(text);
      return;
    }
    text.append(formatText(entry.text));
    li.append(text);
    if (entry.edited) {
      const edited = document.createElement("span");
      edited.className = "edited";
      edited.textContent = "(edited)";
      li.append(edited);
    }
    if (entry.files.length) li.append(fileList(entry.files));
    if (entry.reactions.size) {
      const list = document.createElement("ul");
      list.className = "reactions";
      list.setAttribute("aria-label", "Reactions");
      for (const [emoji, users] of entry.reactions) {
        const item = document.createElement("li");
        const mine = users.includes(me);
        const button = document.createElement("button");
        button.type = "button";
        button.className = "reaction";
        button.textContent = `${emoji} ${users.length}`;
        const names = users.map(nameOf).join(", ");
        button.title = names;
        button.setAttribute("aria-pressed", String(mine));
        button.setAttribute("aria-label", `${emoji} ${users.length}: ${names}`);
        button.addEventListener("click", () => change(() => room.react(entry.seq, emoji, !mine)));
        item.append(button);
        list.append(item);
      }
      li.append(list);
    }
    if (room) li.append(actions(entry));
  }

  /** A message's files: images as thumbnails (opening the full image), others as links to
   * download with their size. */
  function fileList(files) {
    const list = document.createElement("ul");
    list.className = "files";
    list.setAttribute("aria-label", "Files");
    for (const f of files) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = f.url;
      if (INLINE_TYPES.includes(f.content_type)) {
        link.target = "_blank";
        link.rel = "noopener";
        const img = document.createElement("img");
        img.className = "thumb";
        img.src = f.url;
        img.alt = f.name;
        img.loading = "lazy";
        link.append(img);
        item.append(link);
      } else {
        link.className = "file";
        link.download = f.name;
        link.textContent = f.name;
        const size = document.createElement("span");
        size.className = "size";
        size.textContent = sizeWords(f.size);
        item.append(link, " ", size);
      }
      list.append(item);
    }
    return list;
  }

  /** `ada: the first words…` of a shown message. */
  function quoted(entry) {
    if (entry.deleted) return "a deleted message";
    const words = [...entry.text];
    return `${nameOf(entry.user)}: ${words.slice(0, QUOTE_CHARS).join("")}${words.length > QUOTE_CHARS ? "…" : ""}`;
  }

  /** The buttons under a message: reply, react, and for one's own (or as the room's owner)
   * edit and delete. */
  function actions(entry) {
    const bar = document.createElement("div");
    bar.className = "actions";
    const button = (label, name, onClick) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "link";
      b.textContent = label;
      b.setAttribute("aria-label", `${name} ${nameOf(entry.user)}'s message`);
      b.addEventListener("click", onClick);
      bar.append(b);
      return b;
    };
    button("Reply", "Reply to", () => compose({ mode: "reply", entry }));
    const react = button("React", "React to", () => {
      const open = bar.querySelector(".picker");
      if (open) { open.remove(); react.setAttribute("aria-expanded", "false"); return; }
      const picker = document.createElement("div");
      picker.className = "picker";
      for (const emoji of PICKER) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = emoji;
        b.setAttribute("aria-label", `React with ${emoji}`);
        b.addEventListener("click", () => change(() => room.react(entry.seq, emoji, true)));
        picker.append(b);
      }
      bar.append(picker);
      react.setAttribute("aria-expanded", "true");
      picker.firstElementChild.focus();
    });
    react.setAttribute("aria-expanded", "false");
    if (entry.user === me) button("Edit", "Edit", () => compose({ mode: "edit", entry }));
    if (entry.user === me || moderates) {
      // Asked in place, not in a modal dialog: "Delete for everyone?" with the two answers.
      button("Delete", "Delete", () => {
        const ask = document.createElement("span");
        ask.className = "confirm";
        ask.textContent = "Delete for everyone? ";
        const yes = document.createElement("button");
        yes.type = "button";
        yes.className = "link danger";
        yes.textContent = "Delete";
        yes.addEventListener("click", () => change(() => room.remove(entry.seq)));
        const no = document.createElement("button");
        no.type = "button";
        no.className = "link";
        no.textContent = "Keep";
        no.addEventListener("click", () => renderBody(entry));
        ask.append(yes, " ", no);
        bar.replaceChildren(ask);
        yes.focus();
      });
    }
    if (moderates && entry.user !== me) {
      // What a moderator may do to the message's author, each said to the whole room.
      const moderate = (action, seconds) => change(() => room.moderate(entry.user, action, seconds));
      const b = (label, action, seconds) => {
        const m = document.createElement("button");
        m.type = "button";
        m.className = "link";
        m.textContent = label;
        m.setAttribute("aria-label", `${label} ${nameOf(entry.user)}`);
        m.addEventListener("click", () => moderate(action, seconds));
        bar.append(m);
      };
      b("Mute 10 min", "mute", 600);
      b("Kick", "kick");
      b("Ban", "ban");
    }
    return bar;
  }

  /** Runs a change; a refusal is said where the composer's errors are. */
  async function change(make) {
    try {
      await make();
      showError(""); // what changed arrives on the stream, in order
    } catch (e) {
      if (e.status === 401) return signIn();
      showError(e.status ? e.message : "Could not reach the server; nothing was changed.");
    }
  }

  // ---- Changes arriving on the stream ----
  function edited(e) {
    const entry = bySeq(e.of);
    if (!entry || entry.deleted) return;
    entry.text = e.text;
    entry.edited = true;
    renderBody(entry);
    requote(entry);
  }
  function deleted(e) {
    const entry = bySeq(e.of);
    if (!entry) return;
    entry.deleted = true;
    entry.text = "";
    entry.reactions.clear();
    entry.files = [];
    renderBody(entry);
    requote(entry);
    if (composer.entry === entry) compose({ mode: "post" });
  }
  function reaction(e) {
    const entry = bySeq(e.of);
    if (!entry || entry.deleted) return;
    const users = entry.reactions.get(e.emoji) || [];
    const has = users.includes(e.user_id);
    if (e.added && !has) entry.reactions.set(e.emoji, [...users, e.user_id]);
    if (!e.added && has) {
      const rest = users.filter((u) => u !== e.user_id);
      if (rest.length) entry.reactions.set(e.emoji, rest); else entry.reactions.delete(e.emoji);
    }
    renderBody(entry);
  }
  /** Replies quoting `entry` say what it says now. */
  function requote(entry) {
    for (const reply of shown) if (reply.replyTo === entry.seq) renderBody(reply);
  }

  /** Marks `entry` as continuing `previous` (same person, same day, soon after), and says
   * whether a day separator goes between them. */
  function group(entry, previous) {
    const newDay = !previous || dayKey(previous.at) !== dayKey(entry.at);
    const continued = !newDay && previous.user === entry.user && entry.at - previous.at < GROUP_WITHIN_MS;
    entry.node.classList.toggle("continued", continued);
    entry.newDay = newDay;
  }

  // ---- Who is typing: shown until they stop saying so, or their message arrives ----
  const typists = new Map(); // user id → the timer that forgets them
  function showTypists() {
    const names = [...typists.keys()].map(nameOf).sort();
    typingLine.textContent = names.length === 0 ? ""
      : names.length === 1 ? `${names[0]} is typing…`
      : names.length <= 3 ? `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`
      : "Several people are typing…";
  }

  // What the reader has seen (the page visible, scrolled to the newest) is marked read: at
  // once, then at most once a second while more arrives, and when the page is left.
  let readUpTo = 0, markTimer = null, lastMark = 0;
  const newestSeen = () => Math.max(room?.lastSeq ?? 0, Number(chat.dataset.latest));
  async function mark() {
    markTimer = null;
    lastMark = Date.now();
    const seq = newestSeen();
    if (seq <= readUpTo) return;
    try { readUpTo = (await room.markRead(seq)).up_to; } catch { /* marked with the next message */ }
  }
  function markSeen() {
    if (!room || markTimer || document.visibilityState !== "visible" || !atBottom()) return;
    markTimer = setTimeout(mark, Math.max(0, lastMark + MARK_READ_EVERY_MS - Date.now()));
  }
  addEventListener("pagehide", () => { if (markTimer) { clearTimeout(markTimer); room.markRead(newestSeen(), { keepalive: true }).catch(() => {}); } });

  function append(m) {
    if (typists.has(m.user_id)) { clearTimeout(typists.get(m.user_id)); typists.delete(m.user_id); showTypists(); }
    const previous = shown.at(-1);
    const entry = messageNode(m, previous);
    const stick = atBottom();
    const before = scroller.scrollHeight;
    if (entry.newDay) list.append(daySeparator(entry.at));
    list.append(entry.node);
    shown.push(entry);
    if (stick || m.user_id === me) {
      toBottom();
      markSeen();
    } else {
      // Keep what the reader is looking at where it is, and say something new is below.
      scroller.scrollTop -= scroller.scrollHeight - before;
      unseen += 1;
      jump.textContent = `${unseen} new message${unseen === 1 ? "" : "s"} below`;
      jump.hidden = false;
    }
  }

  /** Older messages (oldest first) go above what is shown; the view stays where it is.
   * A page of history holds changes too (`kind`): the messages it holds already show them. */
  function prepend(page) {
    const messages = page.filter((m) => !m.kind);
    const nodes = [];
    const entries = [];
    let previous = null;
    for (const m of messages) {
      const entry = messageNode(m, previous);
      if (entry.newDay) nodes.push(daySeparator(entry.at));
      nodes.push(entry.node);
      entries.push(entry);
      previous = entry;
    }
    const oldFirst = shown[0];
    if (oldFirst && previous) {
      group(oldFirst, previous);
      const separator = oldFirst.node.previousElementSibling;
      if (!oldFirst.newDay && separator?.classList.contains("day")) separator.remove();
    }
    list.prepend(...nodes);
    shown.unshift(...entries);
    // Replies among them, and below them, may now quote what they answer.
    for (const entry of shown) if (entry.replyTo && entry.replyTo >= (entries[0]?.seq ?? Infinity)) renderBody(entry);
  }

  function showEdge() {
    edge.replaceChildren();
    if (firstShown > firstHeld) {
      const a = document.createElement("a");
      a.id = "older";
      a.href = `/room/${encodeURIComponent(roomId)}?before=${firstShown}`;
      a.textContent = "Load older messages";
      // Without a live page (an older page), the link itself goes there.
      if (room) {
        a.addEventListener("click", (e) => { e.preventDefault(); loadOlder(); });
        watcher?.observe(a);
      }
      edge.append(a);
    } else {
      edge.textContent = firstHeld > 1 ? "Older messages are no longer kept." : chat.dataset.beginning;
    }
  }

  let room = null;
  let loading = false;
  async function loadOlder() {
    if (loading || firstShown <= firstHeld || !room) return;
    loading = true;
    edge.textContent = "Loading older messages…";
    try {
      const page = await room.history({ before: firstShown, limit: 100 });
      firstHeld = page.first_held;
      if (page.messages.length) {
        prepend(page.messages);
        firstShown = page.messages[0].seq;
      } else {
        firstShown = firstHeld;
      }
    } catch (e) {
      if (e.status === 401) return signIn();
      notice(`Could not load older messages: ${e.message}`);
    } finally {
      loading = false;
      showEdge();
    }
  }
  // Scrolling up to the top loads more, as the link does.
  const watcher = "IntersectionObserver" in window
    ? new IntersectionObserver((seen) => { if (seen.some((s) => s.isIntersecting)) loadOlder(); }, { root: scroller })
    : null;

  // ---- People ----
  const people = new Set([...presentList.querySelectorAll("li")].map((li) => li.dataset.user));
  function renderPeople() {
    presentList.replaceChildren(...[...people].sort().map((id) => {
      const li = document.createElement("li");
      li.dataset.user = id;
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.setAttribute("aria-hidden", "true");
      li.append(dot, nameOf(id));
      return li;
    }));
    count.textContent = String(people.size);
    for (const li of document.querySelectorAll("#members li")) {
      const state = li.querySelector(".state");
      if (state) state.textContent = people.has(li.dataset.user) ? "here" : "away";
    }
  }

  // ---- What the server rendered becomes the same live markup ----
  const rendered = [...list.querySelectorAll(".message")].map((li) => ({
    seq: Number(li.dataset.seq),
    user_id: li.dataset.user,
    sent_at: li.dataset.at,
    deleted: li.dataset.deleted === "true",
    edited_at: li.dataset.edited === "true" ? li.dataset.at : null,
    reply_to: li.dataset.replyTo ? Number(li.dataset.replyTo) : null,
    reactions: JSON.parse(li.dataset.reactions || "[]").map((r) => ({ emoji: r.emoji, user_ids: r.users })),
    text: li.dataset.deleted === "true" ? "" : li.querySelector(".text").textContent,
    attachments: JSON.parse(li.dataset.files || "[]"),
  }));
  list.replaceChildren();
  prepend(rendered);
  toBottom();
  scroller.addEventListener("scroll", () => { if (atBottom()) { unseen = 0; jump.hidden = true; markSeen(); } }, { passive: true });
  document.addEventListener("visibilitychange", markSeen);
  jump.addEventListener("click", () => { toBottom(); textInput.focus(); });

  const setStatus = (text, on) => { status.textContent = text; status.classList.toggle("live", on); };

  function ended(closed) {
    setStatus("Closed", false);
    if (closed.status === 401 || closed.reason === "signed-out" || closed.reason === "session-expired") return signIn();
    const why = {
      deleted: `This room was deleted${closed.by ? ` by ${closed.by}` : ""}.`,
      expired: "This room expired after a long time with nobody in it.",
      removed: "You were removed from this room.",
      kicked: `You were removed from this room by ${closed.by}; you may come back.`,
      banned: `You were banned from this room${closed.by ? ` by ${closed.by}` : ""}.`,
      "room-not-found": "This room no longer exists.",
      "permission-denied": "You may no longer read this room.",
    }[closed.reason] || `The connection ended: ${closed.detail || closed.reason}.`;
    notice(why, { lasting: true });
    people.clear();
    renderPeople();
    for (const control of form.elements) control.disabled = true;
  }

  followUnread(roomId);
  if (live) room = connect({
    room: roomId,
    since: Number(chat.dataset.latest),
    on: {
      message: append,
      edited,
      deleted,
      reaction,
      typing(t) {
        if (t.user_id === me) return;
        clearTimeout(typists.get(t.user_id));
        typists.set(t.user_id, setTimeout(() => { typists.delete(t.user_id); showTypists(); }, t.expires_in_ms));
        showTypists();
      },
      moderation(e) {
        const who = e.target_id === me ? "You were" : `${e.target} was`;
        const what = {
          appoint: "made a moderator", dismiss: "no longer a moderator",
          mute: `muted until ${e.until ? clock(new Date(e.until)) : "later"}`, unmute: "unmuted",
          kick: "removed from the room", ban: "banned", unban: "unbanned",
        }[e.action] || e.action;
        notice(`${who} ${what} by ${e.user}.`, { lasting: e.target_id === me });
      },
      presence(p) {
        if (p.kind === "snapshot") { people.clear(); for (const u of p.users) people.add(u.user_id); }
        else if (p.kind === "joined") people.add(p.user_id);
        else if (p.kind === "left") people.delete(p.user_id);
        renderPeople();
      },
      gap(g) {
        const missing = g.first_held - g.after - 1;
        const li = document.createElement("li");
        li.className = "gap";
        li.textContent = `${missing} message${missing === 1 ? " is" : "s are"} no longer kept here.`;
        list.append(li);
        notice(li.textContent);
      },
      status(s) {
        if (s === "live") { setStatus("Live", true); markSeen(); }
        else if (s === "connecting") setStatus("Connecting…", false);
        else if (s === "reconnecting") setStatus("Reconnecting…", false);
      },
      restarting: () => notice("The server is restarting; reconnecting…"),
      reconnected: () => notice("Reconnected: you are up to date."),
      reset() {
        notice("This room's history was reset on the server; showing it afresh.", { lasting: true });
        list.replaceChildren();
        shown.length = 0;
        firstShown = firstHeld = 1;
        showEdge();
      },
      closed: ended,
    },
  });
  // Live, each message gets what the reader may do with it.
  if (room) for (const entry of shown) renderBody(entry);
  showEdge();

  // ---- Posting ----
  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  // What the composer is doing: posting, replying to a message, or editing one's own.
  const composer = { mode: "post", entry: null };
  function compose({ mode, entry = null }) {
    const wasEditing = composer.mode === "edit";
    composer.mode = mode;
    composer.entry = entry;
    composing.replaceChildren();
    composing.hidden = mode === "post";
    if (mode !== "post") {
      const what = document.createElement("span");
      what.textContent = mode === "edit" ? "Editing your message" : `Replying to ${quoted(entry)}`;
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "link";
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", () => compose({ mode: "post" }));
      composing.append(what, " ", cancel);
    }
    if (mode === "edit") textInput.value = entry.text;
    else if (wasEditing) textInput.value = "";
    fit();
    textInput.focus();
  }

  // Sending clears the composer at once, so the next message can be typed while this one
  // is on its way; posts go one after another, so they arrive in the order they were sent.
  // A post that fails gives its text back, unless something new has been typed since.
  let sending = Promise.resolve();
  form.addEventListener("submit", (event) => {
    if (!room) return; // an older page posts the form itself
    event.preventDefault();
    const text = textInput.value;
    const { mode, entry } = composer;
    if (mode !== "edit" && pending.some((p) => !p.attachment && !p.failed)) {
      return showError("Wait until the files are uploaded.");
    }
    const files = mode === "edit" ? [] : pending.filter((p) => p.attachment);
    if (!text.trim() && files.length === 0) return;
    if (mode !== "edit") clearPending();
    compose({ mode: "post" });
    textInput.value = "";
    fit();
    textInput.focus();
    const attachments = files.map((p) => p.attachment.id);
    sending = sending.then(async () => {
      try {
        if (mode === "edit") await room.edit(entry.seq, text);
        else await room.post(text, { attachments, ...(mode === "reply" ? { replyTo: entry.seq } : {}) });
        showError(""); // the message itself arrives on the stream, in order
      } catch (e) {
        if (e.status === 401) return signIn();
        if (!textInput.value) {
          textInput.value = text;
          fit();
        }
        showError(e.status ? e.message : "Could not reach the server; your message was not sent.");
      }
    });
  });

  // ---- Files: chosen with the button, dropped on the conversation or pasted; uploaded at
  // once, sent with the next message ----
  const attach = $("attach");
  const picker = $("files");
  const pendingList = $("pending");
  /** What the composer will send: {file, node, attachment (once uploaded), failed (why not)}. */
  const pending = [];
  function drawPending(item) {
    const state = item.failed ? ` (not sent: ${item.failed})` : item.attachment ? "" : " (uploading…)";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${item.file.name}`);
    remove.addEventListener("click", () => {
      pending.splice(pending.indexOf(item), 1);
      item.node.remove();
      showPending();
    });
    item.node.replaceChildren(`${item.file.name} ${sizeWords(item.file.size)}${state} `, remove);
  }
  function showPending() {
    pendingList.hidden = pending.length === 0;
    // A message may be only files.
    textInput.required = pending.length === 0;
  }
  function clearPending() {
    pending.length = 0;
    pendingList.replaceChildren();
    showPending();
  }
  function addFiles(files) {
    if (!room) return;
    for (const file of files) {
      const item = { file, node: document.createElement("li"), attachment: null, failed: null };
      pending.push(item);
      pendingList.append(item.node);
      drawPending(item);
      room.upload(file).then(
        (attachment) => { item.attachment = attachment; drawPending(item); },
        (e) => {
          if (e.status === 401) return signIn();
          item.failed = e.status ? e.message : "the server could not be reached";
          drawPending(item);
        },
      );
    }
    showPending();
  }
  if (room) {
    attach.hidden = false;
    attach.addEventListener("click", () => picker.click());
    picker.addEventListener("change", () => { addFiles(picker.files); picker.value = ""; });
    const conversation = $("main");
    const carriesFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
    conversation.addEventListener("dragover", (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      conversation.classList.add("dropping");
    });
    conversation.addEventListener("dragleave", () => conversation.classList.remove("dropping"));
    conversation.addEventListener("drop", (e) => {
      conversation.classList.remove("dropping");
      if (!carriesFiles(e)) return;
      e.preventDefault();
      addFiles(e.dataTransfer.files);
    });
    textInput.addEventListener("paste", (e) => {
      if (e.clipboardData?.files.length) { e.preventDefault(); addFiles(e.clipboardData.files); }
    });
  }

  // The composer grows with its text, up to the stylesheet's max-height.
  const fit = () => {
    textInput.style.height = "auto";
    textInput.style.height = textInput.scrollHeight + 2 + "px";
    textInput.style.overflowY = textInput.scrollHeight > textInput.clientHeight + 2 ? "auto" : "hidden";
  };
  textInput.addEventListener("input", fit);
  // Typing is said at most every few seconds while there is text, so others see it.
  let saidTyping = 0;
  textInput.addEventListener("input", () => {
    if (!room || !textInput.value.trim() || Date.now() - saidTyping < TYPING_EVERY_MS) return;
    saidTyping = Date.now();
    room.typing();
  });
  textInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    if (e.key === "Escape" && composer.mode !== "post") { e.preventDefault(); compose({ mode: "post" }); }
  });
}

/** The sidebar's unread counts, as the room list says them (every link names its room). */
function showUnread(rooms, current) {
  for (const r of rooms) {
    const link = document.querySelector(`.sidebar a[data-room="${CSS.escape(r.id)}"]`);
    if (!link) continue;
    let badge = link.querySelector(".unread");
    const n = r.id === current ? 0 : (r.unread ?? 0);
    if (n === 0) { badge?.remove(); continue; }
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "unread";
      link.append(" ", badge);
    }
    const hidden = document.createElement("span");
    hidden.className = "sr-only";
    hidden.textContent = " unread";
    badge.replaceChildren(n > 99 ? "99+" : String(n), hidden);
    badge.dataset.count = n;
  }
}

/** Keeps the sidebar's counts fresh: every 20 s while the page is visible, and when it is
 * shown again. */
function followUnread(current) {
  const refresh = async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const res = await fetch("/api/v1/rooms?limit=200", { credentials: "same-origin", cache: "no-store" });
      if (res.ok) showUnread((await res.json()).rooms, current);
    } catch { /* the next round tries again */ }
  };
  setInterval(refresh, UNREAD_EVERY_MS);
  document.addEventListener("visibilitychange", refresh);
}

if (chat) start();
