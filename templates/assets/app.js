// roomcast room page: live messages over Server-Sent Events, posting without a reload.
// Everything from the server is inserted with textContent, never as HTML.
"use strict";
(() => {
  const chat = document.getElementById("chat");
  if (!chat) return;
  const room = chat.dataset.room;
  const list = document.getElementById("messages");
  const scroller = list.parentElement;
  const present = document.getElementById("present");
  const count = document.getElementById("count");
  const status = document.getElementById("status");
  const form = document.getElementById("composer");
  const textInput = document.getElementById("text");
  const errorBox = document.getElementById("error");
  let lastSeq = Number(chat.dataset.latest) || 0;
  let source = null;

  // Who is signed in: the page says; the session cookie (HttpOnly) goes with every request.
  const me = chat.dataset.user;
  const name = () => me;

  const nearBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const scrollDown = () => { scroller.scrollTop = scroller.scrollHeight; };
  const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  function notice(text) {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = text;
    list.append(li);
  }

  function addMessage(m) {
    if (m.seq <= lastSeq) return; // already shown (server-rendered, or a resumed stream)
    lastSeq = m.seq;
    const stick = nearBottom();
    const li = document.createElement("li");
    li.className = "message" + (m.user === name() ? " mine" : "");
    li.dataset.seq = m.seq;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = m.user;
    const at = document.createElement("time");
    at.dateTime = m.sent_at;
    at.textContent = time(m.sent_at);
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = m.text;
    li.append(who, at, text);
    list.append(li);
    if (stick || m.user === name()) scrollDown();
  }

  const people = new Map();
  function renderPeople() {
    present.replaceChildren(...[...people.keys()].sort().map((u) => {
      const li = document.createElement("li");
      li.textContent = u;
      return li;
    }));
    count.textContent = String(people.size);
  }

  function connect() {
    if (source) source.close();
    const url = `/api/v1/rooms/${encodeURIComponent(room)}/events?since=${lastSeq}`;
    source = new EventSource(url);
    source.onopen = () => { status.textContent = "live"; status.classList.add("live"); };
    source.onerror = () => { status.textContent = "reconnecting…"; status.classList.remove("live"); };
    source.addEventListener("message", (e) => addMessage(JSON.parse(e.data)));
    source.addEventListener("presence", (e) => {
      const p = JSON.parse(e.data);
      if (p.kind === "snapshot") { people.clear(); for (const u of p.users) people.set(u.user, u.listeners); }
      else if (p.kind === "joined") people.set(p.user, 1);
      else if (p.kind === "left") people.delete(p.user);
      renderPeople();
    });
    source.addEventListener("gap", (e) => {
      const g = JSON.parse(e.data);
      notice(`${g.first_held - g.after - 1} message(s) are no longer available.`);
      lastSeq = Math.max(lastSeq, g.first_held - 1);
    });
    source.addEventListener("closed", (e) => {
      const c = JSON.parse(e.data);
      if (c.reason === "shutdown") { notice("The server is restarting; reconnecting…"); return; }
      source.close();
      status.textContent = "closed"; status.classList.remove("live");
      notice(c.reason === "deleted" ? `This room was deleted${c.by ? " by " + c.by : ""}.` : "This room has closed.");
      form.querySelector("button").disabled = true;
    });
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = textInput.value;
    if (!text.trim()) return;
    const button = form.querySelector("button");
    button.disabled = true;
    const key = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/[^A-Za-z0-9-]/g, "");
    try {
      const res = await fetch(`/api/v1/rooms/${encodeURIComponent(room)}/messages`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text, idempotency_key: key }),
      });
      if (res.ok) {
        textInput.value = "";
        fit();
        showError(""); // the message itself arrives on the stream, in order
      } else {
        const problem = await res.json().catch(() => ({ detail: res.statusText }));
        showError(problem.detail || "Could not send.");
      }
    } catch (e) {
      showError("Could not reach the server; your message was not sent.");
    } finally {
      button.disabled = false;
      textInput.focus();
    }
  });

  // The composer grows with its text, up to the stylesheet's max-height.
  const fit = () => {
    textInput.style.height = "auto";
    textInput.style.height = textInput.scrollHeight + 2 + "px";
    textInput.style.overflowY = textInput.scrollHeight > textInput.clientHeight + 2 ? "auto" : "hidden";
  };
  textInput.addEventListener("input", fit);

  textInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });

  for (const t of list.querySelectorAll("time")) t.textContent = time(t.dateTime);
  for (const li of list.querySelectorAll(".message")) {
    if (li.querySelector(".who").textContent === name()) li.classList.add("mine");
  }
  for (const li of present.querySelectorAll("li")) people.set(li.textContent, 1);
  scrollDown();
  connect();
})();
