// The annotation page: sign in with a token, answer one item at a time, keyboard or mouse.
// State for tests and people alike: <body data-state="signin|loading|ready|saving|done|paused">,
// and #task[data-ref] names the item on screen.
"use strict";

const $ = (id) => document.getElementById(id);
const SECTIONS = ["signin", "task", "done", "paused"];
let current = null;   // the item on screen: {ref, protocol, question, candidates, images}
let busy = false;     // a request is in flight or images are loading: keys and clicks wait
let typed = "";       // digits typed so far (protocol A with more than 10 choices)

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (err) {
    throw new ApiError(0, "the server cannot be reached; your earlier answers are saved");
  }
  let data = {};
  try { data = await resp.json(); } catch (err) { /* not JSON */ }
  if (!resp.ok) throw new ApiError(resp.status, data.error || resp.statusText);
  return data;
}

function setState(state) { document.body.dataset.state = state; }

function show(section) {
  for (const id of SECTIONS) $(id).hidden = id !== section;
  $("progress").hidden = section !== "task" && section !== "done";
}

function keyLabel(i, n) {
  if (current.protocol === "B") return current.candidates[i] === "same" ? "S" : "D";
  if (n <= 10) return i < 9 ? String(i + 1) : "0";
  return String(i + 1);
}

function renderProgress(p) {
  const total = p.answered + p.available;
  $("bar").max = Math.max(total, 1);
  $("bar").value = p.answered;
  $("progress-text").textContent =
    `You: ${p.answered} answered, ${p.available} to go · study: ${p.study_answers} of ${p.study_target} answers`;
}

function figure(src, caption, id) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.id = id;
  img.alt = caption;
  img.src = src;
  img.width = 256;
  img.height = 256;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return { fig, img };
}

async function render(data) {
  $("who").hidden = false;
  $("annotator").textContent = data.annotator;
  renderProgress(data.progress);
  current = data.item;
  typed = "";
  $("typed").textContent = "";
  $("task-error").textContent = "";
  if (!current) {
    $("task").dataset.ref = "";
    show("done");
    setState("done");
    return;
  }
  setState("loading");
  $("task").dataset.ref = current.ref;
  $("task").dataset.protocol = current.protocol;
  $("question").textContent = current.question;
  const images = $("images");
  images.replaceChildren();
  const imgs = [];
  if (current.images.original) {
    const o = figure(current.images.original, "Original", "img-original");
    images.append(o.fig);
    imgs.push(o.img);
  }
  const r = figure(current.images.reconstruction, current.protocol === "B" ? "Reconstruction" : "Image",
                   "img-reconstruction");
  images.append(r.fig);
  imgs.push(r.img);

  const choices = $("choices");
  choices.replaceChildren();
  const n = current.candidates.length;
  current.candidates.forEach((answer, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.dataset.answer = answer;
    b.disabled = true;
    const k = document.createElement("kbd");
    k.textContent = keyLabel(i, n);
    b.append(k, document.createTextNode(answer));
    b.addEventListener("click", () => choose(answer));
    choices.append(b);
  });
  $("keys").textContent = current.protocol === "B"
    ? "Keys: S = same, D = different."
    : (n <= 10 ? "Keys: the number shown on a choice (0 for the tenth)."
               : "Keys: type the number shown on a choice (Enter after a one-digit number that could go on; Esc clears).");
  show("task");
  busy = true;
  await Promise.all(imgs.map((img) => img.decode().catch(() => {
    $("task-error").textContent = "An image did not load; reload the page.";
  })));
  busy = false;
  for (const b of choices.querySelectorAll("button")) b.disabled = false;
  setState("ready");
}

async function load() {
  setState("loading");
  try {
    await render(await api("GET", "/api/next"));
  } catch (err) {
    if (err.status === 401) { signInPage(""); return; }
    $("task-error").textContent = err.message;
    setState("error");
  }
}

async function choose(answer) {
  if (!current || busy) return;
  busy = true;
  setState("saving");
  for (const b of $("choices").querySelectorAll("button")) {
    b.disabled = true;
    if (b.dataset.answer === answer) b.classList.add("chosen");
  }
  try {
    const data = await api("POST", "/api/answer", { ref: current.ref, answer });
    busy = false;
    await render(data);
  } catch (err) {
    busy = false;
    if (err.status === 401) { signInPage("Your token is no longer valid; ask the organiser."); return; }
    await load();
    $("task-error").textContent = `Not saved: ${err.message}`;
  }
}

function markTyped() {
  $("typed").textContent = typed ? `Typed: ${typed}` : "";
  const v = Number(typed);
  for (const [i, b] of Array.from($("choices").querySelectorAll("button")).entries()) {
    b.classList.toggle("typed", typed !== "" && i === v - 1);
  }
}

function onKey(ev) {
  if (!current || busy || $("task").hidden) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  if (ev.target && (ev.target.tagName === "INPUT" || ev.target.tagName === "TEXTAREA")) return;
  const n = current.candidates.length;
  const key = ev.key;
  if (current.protocol === "B") {
    if (key === "s" || key === "S") { ev.preventDefault(); choose("same"); }
    else if (key === "d" || key === "D") { ev.preventDefault(); choose("different"); }
    return;
  }
  if (/^[0-9]$/.test(key)) {
    ev.preventDefault();
    if (n <= 10) {
      const i = key === "0" ? 9 : Number(key) - 1;
      if (i < n) choose(current.candidates[i]);
      return;
    }
    typed += key;
    const v = Number(typed);
    if (v < 1 || v > n) { typed = ""; markTyped(); return; }
    if (v * 10 > n) { typed = ""; markTyped(); choose(current.candidates[v - 1]); return; }
    markTyped();
  } else if (key === "Enter" && typed) {
    ev.preventDefault();
    const v = Number(typed);
    typed = "";
    markTyped();
    if (v >= 1 && v <= n) choose(current.candidates[v - 1]);
  } else if (key === "Escape" || key === "Backspace") {
    typed = "";
    markTyped();
  }
}

function signInPage(message) {
  current = null;
  $("who").hidden = true;
  show("signin");
  setState("signin");
  $("signin-error").textContent = message;
  $("token").focus();
}

async function signIn(token) {
  try {
    await api("POST", "/api/session", { token });
    $("token").value = "";
    $("signin-error").textContent = "";
    await load();
  } catch (err) {
    signInPage(err.status === 401 ? "Unknown token: check it or ask the organiser." : err.message);
  }
}

async function signOut() {
  try { await api("DELETE", "/api/session"); } catch (err) { /* the cookie goes anyway when it expires */ }
  current = null;
  $("who").hidden = true;
  show("paused");
  setState("paused");
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("keydown", onKey);
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("signout").addEventListener("click", signOut);
  $("again").addEventListener("click", () => signInPage(""));
  // A link of the form /#token=... signs in once; the fragment never reaches the server's logs.
  const match = /^#token=([A-Za-z0-9_-]{16,128})$/.exec(window.location.hash);
  if (match) {
    history.replaceState(null, "", window.location.pathname);
    signIn(match[1]);
  } else {
    start();
  }
});

async function start() {
  try {
    const who = await api("GET", "/api/session");
    if (who.annotator) await load();
    else signInPage("");
  } catch (err) {
    signInPage(err.message);
  }
}
