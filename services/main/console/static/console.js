// The task console: sign in with an API key, create tasks, and follow them live.
//
// main is the source of truth: the list is read from GET /api/tasks when the websocket (communication) first says
// "connected", and in between only events change it. After a reconnect the socket resumes with since=<the last
// event's seq> and communication replays what was missed, so the list is read again only when it says "resync"
// (what was missed is no longer in the stream). Nothing polls.
"use strict";

(() => {
  const KEY_STORAGE = "taskConsole.apiKey";
  const LIST_LIMIT = 50;
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };
  const HEARTBEAT_MS = 25000;
  const PONG_TIMEOUT_MS = 10000;
  const MAX_BACKOFF_MS = 15000;
  // communication closes a socket when its token expires: this long before, a socket with a fresh token takes over.
  const RENEW_BEFORE_MS = 15000;

  const state = {
    apiKey: null,
    // Bumped on sign-out, so late answers to a previous session's requests are dropped.
    session: 0,
    tasks: new Map(),
    // What the console knows of each integration main serves: label, main input field, per-task actions.
    integrations: new Map(),
    socket: null,
    connection: "offline",
    connectionLog: [],
    everConnected: false,
    attempt: 0,
    retryTimer: null,
    // The socket being opened with a fresh token while the current one still delivers, and when that starts.
    renewing: null,
    renewTimer: null,
    heartbeat: null,
    lastMessageAt: 0,
    // The stream sequence of the last event received (or where the stream stood at connect): resume from here.
    lastSeq: null,
    // Creates in flight: an event for a task we do not know yet is most likely one of them.
    pendingCreates: 0,
    orphans: new Set(),
  };

  const $ = (id) => document.getElementById(id);

  // --- HTTP ----------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const code = body && typeof body.code === "string" ? body.code : `http_${status}`;
      const message = body && typeof body.message === "string" ? body.message : `HTTP ${status}`;
      super(`${code}: ${message}`);
      this.status = status;
      this.code = code;
      this.detail = message;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.apiKey}`, Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, { code: "network_error", message: "main cannot be reached" });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // --- forms and actions of the integrations main serves ---------------------------------------------------
  //
  // GET /api/integrations names them, with their pattern and the console hints of their manifests; main's
  // OpenAPI schema gives each create route's body: field types, limits, allowed values, defaults. So a new
  // integration gets its form, and a submit-poll one its refresh button, with no change here.

  // Per-task actions a pattern declares: POST /api/integrations/<name>/tasks/{id}/<verb>, shown while running.
  const PATTERN_ACTIONS = {
    "submit-poll": [{ verb: "refresh", label: "Refresh", busy: "Refreshing…" }],
  };

  function resolveRef(doc, schema) {
    let current = schema;
    for (let i = 0; current && current.$ref && i < 10; i++) {
      const path = current.$ref.replace(/^#\//, "").split("/");
      current = path.reduce((node, part) => (node ? node[part] : undefined), doc);
    }
    return current || {};
  }

  // One property's schema in a flat form. Optional fields come as "X or null": a type list, oneOf or anyOf.
  function describe(doc, property) {
    const own = resolveRef(doc, property);
    const schemas = [own, ...(own.oneOf || own.anyOf || []).map((alt) => resolveRef(doc, alt))];
    const types = new Set(schemas.flatMap((s) => [].concat(s.type || [])));
    const withEnum = schemas.find((s) => Array.isArray(s.enum));
    const nullable = types.delete("null") || Boolean(withEnum && withEnum.enum.includes(null));
    const first = (key) => schemas.map((s) => s[key]).find((value) => value !== undefined);
    let type = types.size === 1 ? [...types][0] : null;
    if (withEnum) type = "enum";
    if (type === "array" && !describe(doc, own.items || {}).accepts.has("string")) type = null;
    return {
      type,
      accepts: types,
      nullable,
      values: withEnum ? withEnum.enum.filter((value) => value !== null) : [],
      default: own.default,
      minimum: first("minimum"),
      maximum: first("maximum"),
      maxLength: first("maxLength"),
      description: first("description"),
    };
  }

  function humanize(name) {
    const words = name.replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  // A labelled control for one field, or null for a type a form cannot take (objects; send those with the API).
  function fieldControl(doc, integration, name, property, required, hint) {
    const field = describe(doc, property);
    const id = `${integration}-${name}`;
    const hasDefault = field.default !== undefined && field.default !== null;
    let control;
    let wide = false;
    if (field.type === "enum" || field.type === "boolean") {
      const values = field.type === "boolean" ? [true, false] : field.values;
      control = el("select", { id, name, "data-kind": values.every((v) => typeof v !== "string") ? typeof values[0] : "string" });
      if (!required && !hasDefault) control.append(el("option", { value: "" }, "default"));
      for (const value of values) control.append(el("option", { value: String(value) }, String(value)));
      if (hasDefault) control.value = String(field.default);
    } else if (field.type === "integer" || field.type === "number") {
      control = el("input", {
        id,
        name,
        type: "number",
        "data-kind": "number",
        min: field.minimum,
        max: field.maximum,
        step: field.type === "integer" ? "1" : "any",
        required: required,
        placeholder: hint && hint.example ? hint.example : hasDefault ? `default: ${field.default}` : "default",
      });
    } else if (field.type === "string" || field.type === "array") {
      const list = field.type === "array";
      const textarea = list || (hint && hint.widget === "textarea");
      control = el(textarea ? "textarea" : "input", {
        id,
        name,
        "data-kind": list ? "list" : "string",
        rows: textarea ? (list ? "2" : "3") : null,
        maxlength: list ? null : field.maxLength,
        required: required,
        spellcheck: "false",
        placeholder: hint && hint.example ? hint.example : list ? "one per line" : hasDefault ? `default: ${field.default}` : null,
      });
      wide = true;
    } else {
      return null;
    }
    if (field.description) control.title = field.description;
    const label = (hint && hint.label) || humanize(name);
    return el("div", { className: wide ? "field wide" : "field" }, el("label", { for: id }, label), control);
  }

  function buildForm(doc, integration, bodySchema) {
    const hints = integration.console || { label: integration.name, fields: [] };
    const properties = bodySchema.properties || {};
    const required = new Set(bodySchema.required || []);
    const hinted = new Map(hints.fields.filter((f) => f.name in properties).map((f) => [f.name, f]));
    const others = Object.keys(properties).filter((name) => !hinted.has(name));
    // Without hints every field is shown; with them, the hinted ones first and the rest under "More options".
    const first = hinted.size ? [...hinted.keys()] : others;
    const more = hinted.size ? others : [];
    const controls = (names) =>
      names.map((name) => fieldControl(doc, integration.name, name, properties[name], required.has(name), hinted.get(name)));
    const form = el(
      "form",
      { className: "panel task-form", id: `form-${integration.name}`, "data-integration": integration.name },
      el("h3", {}, hints.label, hints.label !== integration.name ? el("small", {}, ` ${integration.name}`) : null),
      el("div", { className: "fields" }, ...controls(first)),
    );
    const extra = controls(more).filter(Boolean);
    if (extra.length) {
      form.append(el("details", { className: "more" }, el("summary", {}, "More options"), el("div", { className: "fields" }, ...extra)));
    }
    form.append(el("button", { type: "submit" }, "Create task"), el("p", { className: "form-error", role: "alert" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      createTask(form);
    });
    const primary = first.find((name) => describe(doc, properties[name]).type === "string");
    return { form, primary };
  }

  function actionsFor(doc, integration) {
    const prefix = `/api/integrations/${integration.name}/tasks/`.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return (PATTERN_ACTIONS[integration.pattern] || []).flatMap((action) => {
      const route = new RegExp(`^${prefix}\\{[^/}]+\\}/${action.verb}$`);
      const path = Object.keys(doc.paths || {}).find((p) => route.test(p) && doc.paths[p].post);
      return path ? [{ ...action, path }] : [];
    });
  }

  async function loadIntegrations() {
    const session = state.session;
    let doc;
    let listed;
    try {
      const schema = fetch("/docs/openapi.json", { cache: "no-store" }).then((response) => {
        if (!response.ok) throw new ApiError(response.status, null);
        return response.json();
      });
      [doc, listed] = await Promise.all([schema, api("GET", "/api/integrations")]);
    } catch (error) {
      if (session === state.session) showNotice(`Could not read the integrations main serves: ${error.message}`);
      return;
    }
    if (session !== state.session) return;
    const forms = [];
    state.integrations.clear();
    for (const integration of listed.items) {
      const create = doc.paths && doc.paths[`/api/integrations/${integration.name}/tasks`];
      const content = create && create.post && create.post.requestBody && create.post.requestBody.content;
      const json = content && content["application/json"];
      const info = {
        label: (integration.console && integration.console.label) || integration.name,
        primary: integration.console && integration.console.fields.length ? integration.console.fields[0].name : null,
        actions: actionsFor(doc, integration),
      };
      if (json) {
        const built = buildForm(doc, integration, resolveRef(doc, json.schema));
        forms.push(built.form);
        info.primary = built.primary || info.primary;
      }
      state.integrations.set(integration.name, info);
    }
    $("task-forms").replaceChildren(...forms);
    $("no-integrations").hidden = forms.length > 0;
  }

  // --- tasks --------------------------------------------------------------------------------------------

  function rank(status) {
    return RANK[status] ?? 0;
  }

  function isNewer(current, incoming) {
    if (Number.isInteger(current.version) && Number.isInteger(incoming.version)) {
      return current.version > incoming.version;
    }
    const order = rank(current.status) - rank(incoming.status);
    if (order !== 0) return order > 0;
    return (Date.parse(current.updated_at) || 0) > (Date.parse(incoming.updated_at) || 0);
  }

  // A full task from main. Statuses only move forward, so a read that raced an event never undoes it.
  function upsertTask(incoming) {
    const current = state.tasks.get(incoming.id);
    let next;
    if (current && isNewer(current, incoming)) {
      next = {
        ...incoming,
        status: current.status,
        progress: current.progress,
        output: current.output,
        error: current.error,
      };
    } else {
      next = { ...current, ...incoming, placeholder: false };
    }
    state.tasks.set(next.id, next);
    state.orphans.delete(next.id);
    renderTask(next);
  }

  function removeTask(event) {
    const current = state.tasks.get(event.task_id);
    if (!current) return;
    if (Number.isInteger(current.version) && Number.isInteger(event.version) && event.version <= current.version) return;
    state.tasks.delete(event.task_id);
    const card = cardFor(event.task_id);
    if (card) card.remove();
    showCount();
  }

  function applyEvent(event) {
    if (typeof event.task_id !== "string") return;
    if (event.event === "task.deleted") return removeTask(event);
    if (event.event !== "task.updated") return;
    let current = state.tasks.get(event.task_id);
    if (!current) {
      current = {
        id: event.task_id,
        integration: event.integration,
        status: "queued",
        input: {},
        output: null,
        error: null,
        progress: null,
        links: {},
        created_at: event.timestamp,
        placeholder: true,
      };
      learnAbout(event.task_id);
    }
    // Events of one task can arrive out of order when main runs several processes; the version says which is newer.
    if (Number.isInteger(current.version) && Number.isInteger(event.version) && event.version <= current.version) return;
    if (TERMINAL.has(current.status) && event.status !== current.status) return;
    if (rank(event.status) < rank(current.status)) return;
    const next = {
      ...current,
      ...(event.changes || {}),
      status: event.status,
      updated_at: event.timestamp,
      version: event.version,
    };
    state.tasks.set(next.id, next);
    renderTask(next);
  }

  // A task created elsewhere (another tab, a script): read it once, unless our own create is in flight.
  function learnAbout(taskId) {
    if (state.pendingCreates > 0) {
      state.orphans.add(taskId);
      return;
    }
    fetchTask(taskId);
  }

  async function fetchTask(taskId) {
    const session = state.session;
    try {
      const task = await api("GET", `/api/tasks/${encodeURIComponent(taskId)}`);
      if (session === state.session) upsertTask(task);
    } catch (error) {
      if (session === state.session) showNotice(`Could not read task ${taskId}: ${error.message}`);
    }
  }

  async function resync() {
    const session = state.session;
    try {
      const page = await api("GET", `/api/tasks?limit=${LIST_LIMIT}`);
      if (session !== state.session) return;
      for (const task of page.items.slice().reverse()) upsertTask(task);
      $("sync-note").textContent = `synced with main at ${clock(new Date())}`;
      hideNotice();
    } catch (error) {
      if (session !== state.session) return;
      if (error.status === 401) return signOut("Your API key is no longer accepted.");
      // Without a resync the list may be stale; reconnecting resyncs again.
      showNotice(`Could not read the task list (${error.message}); reconnecting.`);
      dropSocket();
    }
  }

  async function createTask(form) {
    const name = form.dataset.integration;
    const button = form.querySelector("button[type=submit]");
    const errorLine = form.querySelector(".form-error");
    errorLine.textContent = "";
    button.disabled = true;
    state.pendingCreates++;
    const session = state.session;
    try {
      const task = await api("POST", `/api/integrations/${encodeURIComponent(name)}/tasks`, formBody(form));
      if (session === state.session) upsertTask(task);
    } catch (error) {
      errorLine.textContent = error.message;
    } finally {
      button.disabled = false;
      state.pendingCreates--;
      if (state.pendingCreates === 0 && session === state.session) {
        for (const id of state.orphans) fetchTask(id);
        state.orphans.clear();
      }
    }
  }

  // Empty fields are left out, so main applies its defaults.
  function formBody(form) {
    const body = {};
    for (const element of form.elements) {
      if (!element.name || element.disabled) continue;
      const value = element.value.trim();
      if (value === "") continue;
      const kind = element.dataset.kind;
      if (kind === "number") body[element.name] = Number(value);
      else if (kind === "boolean") body[element.name] = value === "true";
      else if (kind === "list") body[element.name] = value.split("\n").map((line) => line.trim()).filter(Boolean);
      else body[element.name] = value;
    }
    return body;
  }

  async function taskAction(task, button, method, path, busyLabel) {
    const label = button.textContent;
    button.disabled = true;
    button.textContent = busyLabel;
    try {
      const updated = await api(method, path);
      upsertTask(updated);
    } catch (error) {
      const card = cardFor(task.id);
      const line = card && card.querySelector(".action-error");
      if (line) line.textContent = error.message;
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  // --- websocket ----------------------------------------------------------------------------------------

  function setConnection(name, detail) {
    state.connection = name;
    state.connectionLog.push(name);
    const box = $("connection");
    box.dataset.state = name;
    const text = {
      offline: "Signed out",
      connecting: "Connecting…",
      connected: "Live",
      reconnecting: "Reconnecting…",
    }[name];
    $("connection-text").textContent = detail ? `${text} ${detail}` : text;
    $("reconnect-now").hidden = name !== "reconnecting";
  }

  // previous: the open socket this one replaces once it is connected (token renewal). The new one resumes from the
  // last seq seen; events keep coming over the previous one until it is connected, and any delivered over both are
  // dropped by their seq.
  async function connect(token, previous) {
    const session = state.session;
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    clearTimeout(state.renewTimer);
    state.renewTimer = null;
    if (!previous) setConnection(state.everConnected ? "reconnecting" : "connecting");
    const retry = () => (previous ? renewSoon(previous) : scheduleReconnect());
    if (!token) {
      try {
        token = await api("POST", "/api/realtime/token");
      } catch (error) {
        if (session !== state.session) return;
        if (error.status === 401) return signOut("Your API key is no longer accepted.");
        return retry();
      }
    }
    if (session !== state.session || (previous && previous !== state.socket)) return;
    let url;
    const resuming = state.lastSeq !== null;
    try {
      url = new URL(token.url, window.location.href);
      url.searchParams.set("token", token.token);
      if (resuming) url.searchParams.set("since", String(state.lastSeq));
    } catch {
      return retry();
    }
    const socket = new WebSocket(url.toString());
    if (previous) state.renewing = socket;
    else state.socket = socket;
    socket.addEventListener("message", (message) => {
      if (socket !== state.socket && socket !== state.renewing) return;
      state.lastMessageAt = Date.now();
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      if (data.event === "connected") {
        state.attempt = 0;
        state.everConnected = true;
        if (socket === state.renewing) {
          state.renewing = null;
          state.socket = socket;
          previous.close(1000, "token renewed");
        }
        // A resumed socket (a reconnect or a renewal) replays what was missed; a new one starts from the list.
        if (!resuming) {
          state.lastSeq = data.seq;
          resync();
        }
        setConnection("connected");
        startHeartbeat(socket);
        scheduleRenewal(socket, data.expires_at);
      } else if (data.event === "resync") {
        state.lastSeq = data.seq;
        resync();
      } else if (data.task_id !== undefined) {
        // While a renewal connects, both sockets deliver, each in stream order: an event at or before the last
        // seq seen came over the other one already.
        if (Number.isInteger(data.seq)) {
          if (state.lastSeq !== null && data.seq <= state.lastSeq) return;
          state.lastSeq = data.seq;
        }
        applyEvent(data);
      }
    });
    socket.addEventListener("close", (closed) => {
      // A since communication does not accept: start afresh, from the list.
      if (closed.code === 4400) state.lastSeq = null;
      if (socket === state.renewing) {
        state.renewing = null;
        if (state.socket) renewSoon(state.socket);
        return;
      }
      if (socket !== state.socket) return;
      state.socket = null;
      stopHeartbeat();
      abandonRenewal();
      if (session === state.session) scheduleReconnect();
    });
  }

  function abandonRenewal() {
    clearTimeout(state.renewTimer);
    const renewing = state.renewing;
    state.renewing = null;
    if (renewing) renewing.close(1000, "client reconnects");
  }

  function scheduleRenewal(socket, expiresAt) {
    clearTimeout(state.renewTimer);
    if (!Number.isFinite(expiresAt)) return;
    const wait = Math.max(1000, expiresAt * 1000 - Date.now() - RENEW_BEFORE_MS);
    state.renewTimer = setTimeout(() => {
      if (socket === state.socket && socket.readyState === WebSocket.OPEN) connect(undefined, socket);
    }, wait);
  }

  // A renewal that failed is tried again shortly; if the old socket closes meanwhile, the usual reconnect runs.
  function renewSoon(socket) {
    clearTimeout(state.renewTimer);
    state.renewTimer = setTimeout(() => {
      if (socket === state.socket && socket.readyState === WebSocket.OPEN) connect(undefined, socket);
    }, 1000);
  }

  function scheduleReconnect() {
    clearTimeout(state.retryTimer);
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** state.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    state.attempt++;
    setConnection("reconnecting", `in ${Math.max(1, Math.round(delay / 1000))} s`);
    state.retryTimer = setTimeout(() => connect(), delay);
  }

  // Stops listening to the current socket at once (a dead peer may never complete the close) and reconnects.
  function dropSocket() {
    const socket = state.socket;
    if (!socket) return;
    state.socket = null;
    stopHeartbeat();
    abandonRenewal();
    socket.close(4000, "client reconnects");
    scheduleReconnect();
  }

  // communication answers {"type": "ping"} with a pong; silence means the connection is gone.
  function startHeartbeat(socket) {
    stopHeartbeat();
    state.heartbeat = setInterval(() => {
      if (socket !== state.socket || socket.readyState !== WebSocket.OPEN) return;
      const sentAt = Date.now();
      socket.send(JSON.stringify({ type: "ping" }));
      setTimeout(() => {
        if (socket === state.socket && state.lastMessageAt < sentAt) dropSocket();
      }, PONG_TIMEOUT_MS);
    }, HEARTBEAT_MS);
  }

  function stopHeartbeat() {
    clearInterval(state.heartbeat);
    state.heartbeat = null;
  }

  // --- rendering ----------------------------------------------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // replaceChildren would turn a null into the text "null".
  function setChildren(node, ...children) {
    node.replaceChildren(...children.filter((child) => child !== null && child !== undefined && child !== false));
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function cardFor(taskId) {
    return document.querySelector(`li[data-task-id="${CSS.escape(taskId)}"]`);
  }

  function renderTask(task) {
    let card = cardFor(task.id);
    if (!card) {
      card = el("li", { className: "task panel", "data-task-id": task.id, "aria-labelledby": `title-${task.id}` });
      card.append(
        el("div", { className: "task-head" }),
        el("div", { className: "task-input" }),
        el("div", { className: "task-progress" }),
        el("div", { className: "task-result" }),
        el("div", { className: "task-error" }),
        el("div", { className: "task-actions" }),
      );
      placeCard(card, task);
    }
    card.dataset.status = task.status;
    fillHead(card.querySelector(".task-head"), task);
    fillInput(card.querySelector(".task-input"), task);
    fillProgress(card.querySelector(".task-progress"), task);
    fillResult(card.querySelector(".task-result"), task);
    fillError(card.querySelector(".task-error"), task);
    fillActions(card.querySelector(".task-actions"), task);
    showCount();
  }

  function showCount() {
    const count = state.tasks.size;
    $("empty").hidden = count > 0;
    $("task-count").textContent = count ? `(${count})` : "";
  }

  // Newest first, by creation time.
  function placeCard(card, task) {
    const list = $("task-list");
    const created = task.created_at || "";
    for (const other of list.children) {
      const otherTask = state.tasks.get(other.dataset.taskId);
      if (otherTask && (otherTask.created_at || "") < created) {
        list.insertBefore(card, other);
        return;
      }
    }
    list.append(card);
  }

  function integrationInfo(name) {
    return state.integrations.get(name) || { label: name, primary: null, actions: [] };
  }

  // The field a task card shows as its text: the integration's main input (a prompt, a message).
  function primaryInput(task) {
    const name = integrationInfo(task.integration).primary;
    const input = task.input || {};
    return name && input[name] !== undefined && input[name] !== null ? [name, input[name]] : [null, undefined];
  }

  function fillHead(head, task) {
    const created = task.created_at ? new Date(task.created_at) : null;
    setChildren(
      head,
      el(
        "h3",
        { id: `title-${task.id}` },
        `${integrationInfo(task.integration).label} `,
        el("code", { title: task.id }, task.id.slice(0, 8)),
      ),
      el("span", { className: "status", "data-status": task.status }, task.status),
      created ? el("time", { datetime: task.created_at, className: "hint" }, clock(created)) : null,
    );
  }

  function shorten(value) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    if (text.startsWith("data:")) return `${text.slice(0, text.indexOf(",") + 1)}… (${text.length} chars)`;
    return text.length > 300 ? `${text.slice(0, 300)}…` : text;
  }

  function fillInput(box, task) {
    const input = task.input || {};
    const [primary, main] = primaryInput(task);
    const rest = Object.entries(input).filter(
      ([key, value]) => key !== primary && value !== null && value !== false && !(Array.isArray(value) && !value.length),
    );
    setChildren(
      box,
      main !== undefined ? el("p", { className: "prompt" }, shorten(main)) : null,
      rest.length
        ? el("p", { className: "hint params" }, rest.map(([key, value]) => `${key}: ${shorten(value)}`).join(" · "))
        : null,
    );
  }

  function fillProgress(box, task) {
    const show = task.status === "running" && typeof task.progress === "number";
    setChildren(
      box,
      show ? el("progress", { max: "1", value: String(task.progress), "aria-label": "progress" }) : null,
    );
  }

  function fillResult(box, task) {
    const objects = (task.output && task.output.objects) || {};
    const names = Object.keys(objects).sort((a, b) => mediaOrder(objects[a]) - mediaOrder(objects[b]));
    const wanted = names.map((name) => `${name}=${objects[name].key}`).join("|");
    // Same objects: keep the elements, so a playing video or a loaded image is not reloaded by a fresh URL;
    // links take the fresh URL (presigned URLs expire).
    if (box.dataset.objects === wanted) {
      for (const link of box.querySelectorAll("a[data-object]")) {
        const object = objects[link.dataset.object];
        if (object) link.href = object.url;
      }
      return;
    }
    box.dataset.objects = wanted;
    setChildren(box, ...names.map((name) => mediaFor(task, name, objects[name])));
  }

  function mediaOrder(object) {
    const type = object.content_type || "";
    return type.startsWith("video/") ? 0 : type.startsWith("image/") ? 1 : 2;
  }

  function mediaFor(task, name, object) {
    const type = object.content_type || "";
    const prompt = primaryInput(task)[1] || "";
    const size = formatBytes(object.size);
    if (type.startsWith("image/")) {
      const img = el("img", { src: object.url, alt: `${name} for: ${prompt}`.slice(0, 200), "data-object": name });
      retryOnError(img, task.id, name);
      const full = el(
        "a",
        { href: object.url, target: "_blank", rel: "noopener noreferrer", title: "Full size", "data-object": name },
        img,
      );
      return el("figure", {}, full, el("figcaption", { className: "hint" }, `${name} · ${type} · ${size}`));
    }
    if (type.startsWith("video/")) {
      const video = el("video", {
        src: object.url,
        controls: true,
        preload: "metadata",
        playsinline: true,
        "data-object": name,
        "aria-label": `${name} for: ${prompt}`.slice(0, 200),
      });
      retryOnError(video, task.id, name);
      return el("figure", {}, video, el("figcaption", { className: "hint" }, `${name} · ${type} · ${size}`));
    }
    return el(
      "p",
      {},
      el("a", { href: object.url, target: "_blank", rel: "noopener noreferrer", "data-object": name }, `Download ${name}`),
      ` (${type}, ${size})`,
    );
  }

  // Presigned URLs expire: on a load error, read the task once for fresh URLs.
  function retryOnError(media, taskId, name) {
    media.addEventListener(
      "error",
      async () => {
        const session = state.session;
        try {
          const fresh = await api("GET", `/api/tasks/${encodeURIComponent(taskId)}`);
          const object = fresh.output && fresh.output.objects && fresh.output.objects[name];
          if (session !== state.session || !object || object.url === media.getAttribute("src")) return;
          media.src = object.url;
          const link = media.closest("a[data-object]");
          if (link) link.href = object.url;
        } catch {
          // The card keeps its broken element; the next resync or refresh may fix it.
        }
      },
      { once: true },
    );
  }

  function formatBytes(size) {
    if (typeof size !== "number") return "";
    if (size < 1024) return `${size} B`;
    if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
    return `${(size / 1024 / 1024).toFixed(1)} MiB`;
  }

  function fillError(box, task) {
    const error = task.error;
    setChildren(
      box,
      error
        ? el("p", { className: "error" }, el("code", { className: "error-code" }, error.code), " ", error.message)
        : null,
    );
  }

  function fillActions(box, task) {
    const running = !TERMINAL.has(task.status);
    const keepError = box.querySelector(".action-error");
    const actions = [];
    for (const action of running ? integrationInfo(task.integration).actions : []) {
      const button = el("button", { type: "button", className: action.verb, "aria-describedby": `title-${task.id}` }, action.label);
      const path = action.path.replace(/\{[^}]+\}/, encodeURIComponent(task.id));
      button.addEventListener("click", () => taskAction(task, button, "POST", path, action.busy));
      actions.push(button);
    }
    if (running) {
      const cancel = el("button", { type: "button", className: "cancel", "aria-describedby": `title-${task.id}` }, "Cancel");
      cancel.addEventListener("click", () =>
        taskAction(task, cancel, "POST", `/api/tasks/${encodeURIComponent(task.id)}/cancel`, "Cancelling…"),
      );
      actions.push(cancel);
    }
    const temporal = task.links && task.links.temporal_ui;
    if (temporal) {
      actions.push(
        el("a", { href: temporal, target: "_blank", rel: "noopener noreferrer", className: "temporal" }, "Workflow in Temporal UI"),
      );
    }
    const errorLine = el("span", { className: "action-error", role: "alert" });
    if (keepError && running) errorLine.textContent = keepError.textContent;
    setChildren(box, ...actions, errorLine);
  }

  function showNotice(text) {
    const notice = $("notice");
    notice.textContent = text;
    notice.hidden = false;
  }

  function hideNotice() {
    $("notice").hidden = true;
  }

  // --- session ------------------------------------------------------------------------------------------

  function showSignedIn(signedIn) {
    $("sign-in").hidden = signedIn;
    $("workspace").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
  }

  async function signIn(key) {
    state.apiKey = key;
    const session = state.session;
    let token;
    try {
      token = await api("POST", "/api/realtime/token");
    } catch (error) {
      if (session !== state.session) return;
      state.apiKey = null;
      const text = error.status === 401 ? "That API key is not accepted." : `Cannot sign in: ${error.message}`;
      if (error.status === 401) sessionStorage.removeItem(KEY_STORAGE);
      showSignedIn(false);
      $("sign-in-error").textContent = text;
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    $("sign-in-error").textContent = "";
    showSignedIn(true);
    await loadIntegrations();
    connect(token);
  }

  function signOut(reason) {
    state.session++;
    state.apiKey = null;
    sessionStorage.removeItem(KEY_STORAGE);
    clearTimeout(state.retryTimer);
    stopHeartbeat();
    abandonRenewal();
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close(1000, "signed out");
    state.tasks.clear();
    state.orphans.clear();
    state.lastSeq = null;
    state.integrations.clear();
    $("task-forms").replaceChildren();
    state.everConnected = false;
    state.attempt = 0;
    $("task-list").replaceChildren();
    showCount();
    $("sync-note").textContent = "";
    hideNotice();
    setConnection("offline");
    showSignedIn(false);
    $("sign-in-error").textContent = reason || "";
  }

  function reconnectNow() {
    if (state.retryTimer !== null && state.apiKey) {
      state.attempt = 0;
      connect();
    }
  }

  function start() {
    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("api-key");
      const key = input.value.trim();
      input.value = "";
      if (key) signIn(key);
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("reconnect-now").addEventListener("click", reconnectNow);
    window.addEventListener("online", reconnectNow);
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) signIn(saved);
  }

  // For tests and for poking at the console from the browser's devtools; no key in here.
  window.__console = {
    get socket() {
      return state.socket;
    },
    get connection() {
      return state.connection;
    },
    get lastSeq() {
      return state.lastSeq;
    },
    connectionLog: state.connectionLog,
  };

  start();
})();
