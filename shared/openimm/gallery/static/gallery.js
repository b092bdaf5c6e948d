// The people gallery. Every read and change is one IMM operation (POST /<Operation>), the
// same any SDK sends; this file only lays the answers out. Text from the server is put
// in with textContent, never as HTML.
"use strict";

const PEOPLE_PER_PAGE = 40;
const FILES_PER_PAGE = 30;
const SIMILAR_PER_PAGE = 20;
// UpdateFileMeta's FigureClusterId for "no person": IMM's own reserved cluster id
const INDEPENDENT = "figure-cluster-id-independent";
// the reserved cluster id of faces not grouped yet; with INDEPENDENT, the faces left out
const UNAVAILABLE = "figure-cluster-id-unavailable";
const VIEWS = ["people-view", "person-view", "left-out-view", "similar-view", "search-view"];
// the codes that mean "log in (again)"
const AUTH_CODES = new Set([
  "MissingAccessKeyId", "InvalidSecurityToken.Expired", "InvalidAccessKeyId.NotFound",
]);

const $ = (id) => document.getElementById(id);
const state = {
  project: "", dataset: "",
  tokens: [null], page: 0,           // NextToken of each people page seen so far
  selected: [],                      // people picked for a merge, in click order
  people: new Map(),                 // ObjectId -> cluster, of the page shown
  person: null, faceToken: null,
  similarToken: null,
};

function showView(shown) {
  for (const id of VIEWS) $(id).hidden = id !== shown;
}

// ------------------------------------------------------------------ the API

class ImmError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function call(operation, body) {
  const reply = await fetch("/" + operation, {
    method: "POST",
    credentials: "same-origin",
    // x-openimm-session: a session's changes need it (no other site's form can send it)
    headers: { "Content-Type": "application/json", "x-openimm-session": "1" },
    body: JSON.stringify(body),
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    const error = new ImmError(data.Code || String(reply.status), data.Message || reply.statusText);
    if (AUTH_CODES.has(error.code)) showLogin();
    throw error;
  }
  return data;
}

const where = () => ({ ProjectName: state.project, DatasetName: state.dataset });

function thumbnailUrl(uri, figureId, size) {
  const query = new URLSearchParams({ ...where(), URI: uri, Size: String(size) });
  if (figureId) query.set("FigureId", figureId);
  return "/thumbnails?" + query.toString();
}

async function waitForTask(taskType, taskId, label) {
  $("task").hidden = false;
  $("task-label").textContent = label;
  for (;;) {
    const task = await call("GetTask", { ProjectName: state.project, TaskType: taskType, TaskId: taskId });
    $("task-progress").value = task.Progress || 0;
    $("task-label").textContent = `${label}: ${task.Status} ${task.Progress || 0}%`;
    if (task.Status !== "Running") {
      if (task.Status !== "Succeeded") throw new ImmError(task.Code || "TaskFailed", task.Message || "the task failed");
      $("task").hidden = true;
      return task;
    }
    await new Promise((done) => setTimeout(done, 700));
  }
}

// ------------------------------------------------------------------ notices and log-in

function notify(text, isError) {
  const box = $("notice");
  box.hidden = false;
  box.className = isError ? "error" : "";
  box.textContent = text;
}

// a notice tells what the last action did: moving to another view leaves it behind
function clearNotice() {
  $("notice").hidden = true;
}

function failed(action) {
  return (error) => notify(`${action} failed: ${error.message} (${error.code || "Error"})`, true);
}

function showLogin() {
  $("login-form").hidden = false;
  $("log-out").hidden = true;
}

async function logIn(event) {
  event.preventDefault();
  const reply = await fetch("/session", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ AccessKeyId: $("key-id").value, AccessKeySecret: $("key-secret").value }),
  });
  const data = await reply.json().catch(() => ({}));
  $("key-secret").value = "";
  if (!reply.ok) return notify(`Log-in failed: ${data.Message} (${data.Code})`, true);
  $("login-form").hidden = true;
  $("log-out").hidden = false;
  notify(`Logged in as ${data.AccessKeyId}.`);
  if (state.project && state.dataset) route();
}

async function logOut() {
  await fetch("/session", { method: "DELETE", credentials: "same-origin" });
  showLogin();
}

// ------------------------------------------------------------------ datasets

async function listDatasets() {
  // the project's datasets offered as the dataset field's choices (ListDatasets)
  const project = $("project").value.trim();
  if (!project) return;
  const names = [];
  let token = null;
  do {
    const reply = await call("ListDatasets", { ProjectName: project, MaxResults: 200, ...(token ? { NextToken: token } : {}) });
    names.push(...(reply.Datasets || []).map((d) => d.DatasetName));
    token = reply.NextToken;
  } while (token && names.length < 1000);
  $("dataset-names").replaceChildren(...names.map((name) => {
    const option = document.createElement("option");
    option.value = name;
    return option;
  }));
}

// ------------------------------------------------------------------ people

function ageRange(cluster) {
  if (cluster.MinAge == null || cluster.MaxAge == null) return "";
  const low = Math.round(cluster.MinAge), high = Math.round(cluster.MaxAge);
  return low === high ? `age ${low}` : `ages ${low}–${high}`;
}

function coverFigure(cluster) {
  // the cover is a file; its face in this cluster is the one to show
  const figures = (cluster.Cover && cluster.Cover.Figures) || [];
  return figures.find((f) => f.FigureClusterId === cluster.ObjectId) || figures[0] || null;
}

function plural(n, word) {
  const many = word === "person" ? "people" : `${word}s`;
  return `${n} ${n === 1 ? word : many}`;
}

function faceImage(uri, figureId, alt) {
  const img = document.createElement("img");
  img.className = "face";
  img.loading = "lazy";           // a page of people fetches only the crops in view
  img.alt = alt;
  img.width = 160; img.height = 160;
  if (uri) img.src = thumbnailUrl(uri, figureId, 160);
  return img;
}

function personCard(cluster) {
  const card = document.createElement("li");
  card.className = "card person";
  card.dataset.id = cluster.ObjectId;
  const cover = coverFigure(cluster);
  const img = faceImage(cluster.Cover && cluster.Cover.URI, cover && cover.FigureId, cluster.Name || "unnamed person");
  img.addEventListener("click", () => openPerson(cluster.ObjectId));
  const pick = document.createElement("input");
  pick.type = "checkbox"; pick.className = "pick"; pick.title = "Select to merge";
  pick.checked = state.selected.includes(cluster.ObjectId);
  pick.addEventListener("change", () => toggleSelected(cluster.ObjectId, pick.checked, card));
  const name = document.createElement("div");
  name.className = cluster.Name ? "name" : "name unnamed";
  name.textContent = cluster.Name || "Unnamed";
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = [
    plural(cluster.FaceCount || 0, "face"), plural(cluster.ImageCount || 0, "photo"), ageRange(cluster),
  ].filter(Boolean).join(" · ");
  card.append(img, pick, name, meta);
  if (pick.checked) card.classList.add("selected");
  return card;
}

function toggleSelected(id, on, card) {
  state.selected = state.selected.filter((x) => x !== id);
  if (on) state.selected.push(id);
  card.classList.toggle("selected", on);
  $("merge").disabled = state.selected.length < 2;
  $("merge").textContent = state.selected.length < 2 ? "Merge selected"
    : `Merge ${state.selected.length - 1} into ${label(state.selected[0])}`;
}

function label(id) {
  const cluster = state.people.get(id);
  return (cluster && cluster.Name) || "the first picked";
}

async function showPeople() {
  const token = state.tokens[state.page];
  const reply = await call("QueryFigureClusters", {
    ...where(), Sort: "FaceCount", Order: "desc", MaxResults: PEOPLE_PER_PAGE,
    WithTotalCount: true, ...(token ? { NextToken: token } : {}),
  });
  const clusters = reply.FigureClusters || [];
  state.people = new Map(clusters.map((c) => [c.ObjectId, c]));
  state.tokens[state.page + 1] = reply.NextToken || null;
  $("people").replaceChildren(...clusters.map(personCard));
  $("people-count").textContent = plural(reply.TotalCount ?? clusters.length, "person");
  $("page-number").textContent = `page ${state.page + 1}`;
  $("prev-page").disabled = state.page === 0;
  $("next-page").disabled = !reply.NextToken;
  showView("people-view");
  $("run-clustering").disabled = false;
  const list = $("people-ids");
  list.replaceChildren(...clusters.map((c) => {
    const option = document.createElement("option");
    option.value = c.ObjectId;
    option.label = c.Name || `${plural(c.FaceCount || 0, "face")}`;
    return option;
  }));
}

async function merge() {
  // the first person picked keeps their id and name; the others join them
  const [to, ...from] = state.selected;
  const body = { ...where(), To: to, ...(from.length === 1 ? { From: from[0] } : { Froms: from }) };
  const { TaskId } = await call("CreateFigureClustersMergingTask", body);
  await waitForTask("FigureClustersMerging", TaskId, "Merging");
  state.selected = [];
  $("merge").disabled = true;
  $("merge").textContent = "Merge selected";
  notify(`Merged ${plural(from.length, "person")} into ${to}.`);
  await showPeople();
}

async function runTask(button, operation, taskType, label, done) {
  // a task on the whole dataset from a button, its progress shown until it ends
  $(button).disabled = true;
  try {
    const { TaskId } = await call(operation, where());
    await waitForTask(taskType, TaskId, label);
    await done();
  } finally {
    $(button).disabled = false;
  }
}

function runClustering() {
  return runTask("run-clustering", "CreateFigureClusteringTask", "FaceClustering", "Clustering", () => {
    notify("Clustering done.");
    state.tokens = [null]; state.page = 0;
    return showPeople();
  });
}

// ------------------------------------------------------------------ one person

async function openPerson(id) {
  history.pushState(null, "", urlFor(id));
  await showPerson(id);
}

async function showPerson(id) {
  const { FigureCluster: person } = await call("GetFigureCluster", { ...where(), ObjectId: id });
  state.person = person;
  state.faceToken = null;
  $("person-name").value = person.Name || "";
  showStats(person);
  $("faces").replaceChildren();
  showView("person-view");
  if (!state.people.size) await fillPeopleIds();
  await moreFaces();
}

async function fillPeopleIds() {
  const reply = await call("QueryFigureClusters", { ...where(), Sort: "FaceCount", Order: "desc", MaxResults: 100 });
  const list = $("people-ids");
  list.replaceChildren(...(reply.FigureClusters || []).map((c) => {
    const option = document.createElement("option");
    option.value = c.ObjectId;
    option.label = c.Name || plural(c.FaceCount || 0, "face");
    return option;
  }));
}

function showStats(person) {
  $("person-stats").textContent = [
    plural(person.FaceCount || 0, "face"), plural(person.ImageCount || 0, "photo"), ageRange(person),
  ].filter(Boolean).join(" · ");
}

async function moreFaces() {
  const id = state.person.ObjectId;
  const reply = await call("SimpleQuery", {
    ...where(), MaxResults: FILES_PER_PAGE,
    Query: { Field: "Figures.FigureClusterId", Operation: "eq", Value: id },
    ...(state.faceToken ? { NextToken: state.faceToken } : {}),
  });
  state.faceToken = reply.NextToken || null;
  const cards = [];
  for (const file of reply.Files || []) {
    for (const figure of file.Figures || []) {
      if (figure.FigureClusterId === id) cards.push(faceCard(file, figure));
    }
  }
  $("faces").append(...cards);
  $("more-faces").hidden = !state.faceToken;
}

function photoImage(uri) {
  const photo = document.createElement("img");
  photo.className = "photo"; photo.loading = "lazy"; photo.alt = uri; photo.title = uri;
  photo.src = thumbnailUrl(uri, null, 240);
  return photo;
}

function faceOnPhoto(file, figure) {
  // a face's card: its crop above the photo it is on
  const card = document.createElement("li");
  card.className = "card face-card";
  card.dataset.figure = figure.FigureId;
  card.append(faceImage(file.URI, figure.FigureId, "face"), photoImage(file.URI));
  return card;
}

function faceCard(file, figure) {
  const card = faceOnPhoto(file, figure);
  const actions = document.createElement("div");
  actions.className = "actions";
  const out = document.createElement("button");
  out.type = "button"; out.className = "move-out"; out.textContent = "Not this person";
  out.addEventListener("click", () => moveFace(file.URI, figure.FigureId, INDEPENDENT, card)
    .catch(failed("Moving the face out")));
  const to = document.createElement("form");
  const target = document.createElement("input");
  target.setAttribute("list", "people-ids"); target.placeholder = "another person's id";
  target.required = true; target.className = "move-target";
  const go = document.createElement("button");
  go.type = "submit"; go.textContent = "Move";
  to.append(target, go);
  to.addEventListener("submit", (event) => {
    event.preventDefault();
    moveFace(file.URI, figure.FigureId, target.value.trim(), card).catch(failed("Moving the face"));
  });
  actions.append(out, to);
  card.append(actions);
  return card;
}

async function moveFace(uri, figureId, clusterId, card) {
  await call("UpdateFileMeta", {
    ...where(), File: { URI: uri, Figures: [{ FigureId: figureId, FigureClusterId: clusterId }] },
  });
  card.remove();
  const { FigureCluster: person } = await call("GetFigureCluster", { ...where(), ObjectId: state.person.ObjectId });
  state.person = person;
  showStats(person);
  notify(clusterId === INDEPENDENT ? "The face is out of this person." : `The face moved to ${clusterId}.`);
}

async function rename(event) {
  event.preventDefault();
  const person = state.person;
  try {
    await call("UpdateFigureCluster", {
      ...where(),
      FigureCluster: { ObjectId: person.ObjectId, Name: $("person-name").value, MetaLockVersion: person.MetaLockVersion },
    });
  } catch (error) {
    if (error.code === "ConcurrentUpdateConflict") {
      return notify("Not saved: someone else changed this person since this page read it. "
        + "Open the person again to see their change, then rename.", true);
    }
    throw error;
  }
  const { FigureCluster: fresh } = await call("GetFigureCluster", { ...where(), ObjectId: person.ObjectId });
  state.person = fresh;
  notify(`Saved the name “${fresh.Name || ""}”.`);
}

// ------------------------------------------------------------------ faces left out

async function showLeftOut() {
  // the faces in IMM's two reserved clusters, under the reason the API gives for each
  const sections = [];
  let total = 0;
  for (const clusterId of [INDEPENDENT, UNAVAILABLE]) {
    const reply = await call("SimpleQuery", {
      ...where(), MaxResults: 100,
      Query: { Field: "Figures.FigureClusterId", Operation: "eq", Value: clusterId },
    });
    const byReason = new Map();
    for (const file of reply.Files || []) {
      for (const figure of file.Figures || []) {
        if (figure.FigureClusterId !== clusterId) continue;
        const reason = figure.FigureClusterReason || clusterId;
        if (!byReason.has(reason)) byReason.set(reason, []);
        byReason.get(reason).push(leftOutCard(file, figure));
      }
    }
    for (const [reason, cards] of byReason) {
      total += cards.length;
      const section = document.createElement("section");
      const title = document.createElement("h2");
      title.textContent = `${plural(cards.length, "face")}: ${reason}`
        + (reply.NextToken ? " (the first 100 photos)" : "");
      const grid = document.createElement("ol");
      grid.className = "grid faces";
      grid.append(...cards);
      section.append(title, grid);
      sections.push(section);
    }
  }
  $("left-out").replaceChildren(...sections);
  $("left-out-count").textContent = total ? `${plural(total, "face")} in no person` : "Every face is in a person.";
  showView("left-out-view");
}

function leftOutCard(file, figure) {
  const card = faceOnPhoto(file, figure);
  const reason = document.createElement("div");
  reason.className = "reason";
  reason.textContent = figure.FigureClusterReason || "";
  card.append(reason);
  return card;
}

// ------------------------------------------------------------------ similar photos

async function showSimilar(more) {
  if (!more) { state.similarToken = null; $("similar").replaceChildren(); }
  const reply = await call("QuerySimilarImageClusters", {
    ...where(), MaxResults: SIMILAR_PER_PAGE,
    ...(state.similarToken ? { NextToken: state.similarToken } : {}),
  });
  state.similarToken = reply.NextToken || null;
  $("similar").append(...(reply.SimilarImageClusters || []).map(similarGroup));
  const shown = $("similar").children.length;
  $("similar-count").textContent = shown ? `${plural(shown, "group")} of similar photos`
    : "No similar photos grouped yet.";
  $("more-similar").hidden = !state.similarToken;
  showView("similar-view");
}

function similarGroup(cluster) {
  // the API lists a group's files best shot first
  const group = document.createElement("li");
  group.className = "group";
  group.dataset.id = cluster.ObjectId;
  group.append(...(cluster.Files || []).map((file, index) => {
    const figure = document.createElement("figure");
    if (index === 0) figure.className = "best";
    const img = photoImage(file.URI);
    const caption = document.createElement("figcaption");
    const score = file.ImageScore == null ? "" : `score ${file.ImageScore.toFixed(2)}`;
    caption.textContent = [index === 0 ? "Best shot" : "", score].filter(Boolean).join(" · ");
    figure.append(img, caption);
    return figure;
  }));
  return group;
}

function runSimilar() {
  return runTask("run-similar", "CreateSimilarImageClusteringTask", "SimilarImageClustering",
    "Grouping similar photos", () => {
      notify("Similar photos grouped.");
      return showSimilar(false);
    });
}

// ------------------------------------------------------------------ face search

async function search(event) {
  event.preventDefault();
  const uri = $("search-uri").value.trim();
  const reply = await call("SearchImageFigureCluster", { ...where(), SourceURI: uri });
  const matches = reply.Clusters || [];
  const ids = [...new Set(matches.map((m) => m.ClusterId))];
  const people = ids.length
    ? (await call("BatchGetFigureCluster", { ...where(), ObjectIds: ids })).FigureClusters || []
    : [];
  const byId = new Map(people.map((c) => [c.ObjectId, c]));
  $("matches").replaceChildren(...matches.filter((m) => byId.has(m.ClusterId)).map((match) => {
    const card = personCard(byId.get(match.ClusterId));
    card.querySelector("input.pick").remove();
    const similarity = document.createElement("div");
    similarity.className = "meta similarity";
    similarity.textContent = `similarity ${Math.round(match.Similarity * 100)}%`;
    card.append(similarity);
    return card;
  }));
  $("search-summary").textContent = matches.length
    ? `${plural(matches.length, "face")} in ${uri} ${matches.length === 1 ? "is" : "are"} someone here:`
    : `No face in ${uri} is anyone here.`;
  showView("search-view");
}

// ------------------------------------------------------------------ navigation

function urlFor(personId) {
  const query = new URLSearchParams({ project: state.project, dataset: state.dataset });
  if (personId) query.set("person", personId);
  return "/?" + query.toString();
}

async function route() {
  const query = new URLSearchParams(location.search);
  state.project = query.get("project") || "";
  state.dataset = query.get("dataset") || "";
  $("project").value = state.project;
  $("dataset").value = state.dataset;
  if (state.project) listDatasets().catch(() => {});  // only a convenience: a failure shows below
  if (!state.project || !state.dataset) return;
  const person = query.get("person");
  try {
    if (person) await showPerson(person); else await showPeople();
  } catch (error) {
    if (AUTH_CODES.has(error.code)) notify("Log in with an access key to open this dataset.");
    else failed("Loading")(error);
  }
}

async function start() {
  $("dataset-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.project = $("project").value.trim();
    state.dataset = $("dataset").value.trim();
    state.tokens = [null]; state.page = 0; state.selected = [];
    history.pushState(null, "", urlFor(null));
    route();
  });
  $("project").addEventListener("change", () => listDatasets().catch(failed("Listing datasets")));
  $("login-form").addEventListener("submit", (event) => logIn(event).catch(failed("Log-in")));
  $("log-out").addEventListener("click", () => logOut().catch(failed("Log-out")));
  $("run-clustering").addEventListener("click", () => runClustering().catch(failed("Clustering")));
  $("merge").addEventListener("click", () => merge().catch(failed("Merging")));
  $("prev-page").addEventListener("click", () => { state.page -= 1; showPeople().catch(failed("Paging")); });
  $("next-page").addEventListener("click", () => { state.page += 1; showPeople().catch(failed("Paging")); });
  $("back").addEventListener("click", () => {
    clearNotice();
    history.pushState(null, "", urlFor(null));
    showPeople().catch(failed("Loading"));
  });
  $("rename-form").addEventListener("submit", (event) => rename(event).catch(failed("Renaming")));
  $("more-faces").addEventListener("click", () => moreFaces().catch(failed("Loading faces")));
  $("show-people").addEventListener("click", () => {
    clearNotice();
    history.pushState(null, "", urlFor(null));
    showPeople().catch(failed("Loading"));
  });
  $("show-left-out").addEventListener("click", () => {
    clearNotice();
    showLeftOut().catch(failed("Loading the faces left out"));
  });
  $("show-similar").addEventListener("click", () => {
    clearNotice();
    showSimilar(false).catch(failed("Loading similar photos"));
  });
  $("more-similar").addEventListener("click", () => showSimilar(true).catch(failed("Loading similar photos")));
  $("run-similar").addEventListener("click", () => runSimilar().catch(failed("Grouping similar photos")));
  $("search-form").addEventListener("submit", (event) => {
    clearNotice();
    search(event).catch(failed("Searching"));
  });
  window.addEventListener("popstate", route);
  const session = await fetch("/session", { credentials: "same-origin" }).then((r) => r.json());
  if (session.KeysRequired) $("log-out").hidden = false;
  await route();
}

start();
