# Reference fixtures for dosewatch's dose-transition pathways, written by the R implementations.
#
#   Rscript tools/r/make_path_fixtures.R [LIBRARY]
#
# LIBRARY (default /tmp/rlib) holds escalation 0.2.3 (brockk/escalation), dtpcrm 0.1.1, BOIN 2.7.2,
# dfcrm 0.2-2.1 and TITEgBOIN 0.4.0 built from their sources (docs/dose-finding.md says how;
# escalation is built without its trialr and DiagrammeR imports, which only its Stan-based
# selectors and its graph drawing use). Writes tests/fixtures/dosefinding/paths/*.json:
#
#   three_plus_three.json  escalation get_three_plus_three %>% get_dose_paths
#   boin.json              escalation get_boin %>% get_dose_paths
#   crm.json               escalation get_dfcrm [%>% dont_skip_doses] %>% get_dose_paths
#   dtpcrm.json            dtpcrm calculate_dtps with applied_crm
#   tite.json              TITE-CRM (dfcrm titecrm / crm, escalation dont_skip_doses) and TITE-BOIN
#                          (TITEgBOIN next_TITE_QuasiBOIN) on every resolution of the pending
#                          patients, then the next cohorts; no R package enumerates these, so this
#                          script does, calling the packages for every decision.
#
# Every node is {path, next_dose, continue}: path as escalation spells it ("2NNT 1NNN"), pending
# patients' resolution as "P:NT" (one letter per pending patient, in data order); next_dose is the
# recommended dose (escalation's 3+3 gives the MTD there when it stops; NA when no dose).
args <- commandArgs(trailingOnly = TRUE)
lib <- if (length(args) >= 1) args[1] else "/tmp/rlib"
.libPaths(c(lib, .libPaths()))
suppressPackageStartupMessages({
  library(escalation); library(dtpcrm); library(dfcrm); library(BOIN); library(TITEgBOIN)
  library(jsonlite); library(tibble)
})
stopifnot(packageVersion("escalation") == "0.2.3", packageVersion("dtpcrm") == "0.1.1",
          packageVersion("BOIN") == "2.7.2", packageVersion("dfcrm") == "0.2.2.1",
          packageVersion("TITEgBOIN") == "0.4.0")

out_dir <- "tests/fixtures/dosefinding/paths"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
write_fixture <- function(x, name) {
  pk <- c("escalation", "dtpcrm", "BOIN", "dfcrm", "TITEgBOIN")
  meta <- list(generator = "tools/r/make_path_fixtures.R", R = R.version.string,
               packages = setNames(lapply(pk, function(p) as.character(packageVersion(p))), pk))
  writeLines(toJSON(list(meta = meta, cases = x), auto_unbox = TRUE, digits = NA, na = "null",
                    null = "null", pretty = TRUE), file.path(out_dir, paste0(name, ".json")))
}
set.seed(20250611)

# ---------------------------------------------------------------- outcomes <-> strings
to_string <- function(dose, tox) {
  if (length(dose) == 0) return("")
  runs <- rle(dose)
  ends <- cumsum(runs$lengths); starts <- ends - runs$lengths + 1
  paste(vapply(seq_along(ends), function(i)
    paste0(runs$values[i], paste(ifelse(tox[starts[i]:ends[i]] == 1, "T", "N"), collapse = "")), ""),
    collapse = " ")
}
letters_for <- function(size, t) paste0(strrep("N", size - t), strrep("T", t))

# escalation dose_paths (a list keyed by the path from the root) -> list of nodes
escalation_nodes <- function(paths) {
  lapply(seq_along(paths), function(i) {
    node <- paths[[i]]
    nd <- node$next_dose
    list(path = names(paths)[i], next_dose = if (length(nd) == 0 || is.na(nd)) NA else as.integer(nd),
         `continue` = continue(node$fit))
  })
}

# Random histories: follow a selector factory for k cohorts with outcomes drawn from a curve
history <- function(factory, curve, k, size, start = 1) {
  dose <- integer(0); tox <- integer(0); d <- start
  for (i in seq_len(k)) {
    y <- rbinom(size, 1, curve[d])
    dose <- c(dose, rep(d, size)); tox <- c(tox, sort(y))
    fit <- factory %>% fit(to_string(dose, tox))
    if (!continue(fit) || is.na(recommended_dose(fit))) break
    d <- recommended_dose(fit)
  }
  list(dose = dose, tox = tox)
}
rand_curve <- function(k, target) sort(pmin(0.9, pmax(0.02, target * exp(rnorm(1, 0, 0.5)) *
  exp(cumsum(c(0, runif(k - 1, 0.1, 0.6)))) / exp(0.35 * (k - 1) / 2))))

# ---------------------------------------------------------------- 3+3
tpt_case <- function(label, num_doses, previous, sizes, allow_deescalate) {
  f <- get_three_plus_three(num_doses = num_doses, allow_deescalate = allow_deescalate)
  p <- f %>% get_dose_paths(cohort_sizes = sizes, previous_outcomes = previous)
  list(label = label, args = list(levels = num_doses, previous = previous, cohort_sizes = sizes,
                                  allow_deescalate = allow_deescalate), nodes = unname(escalation_nodes(p)))
}
tpt <- list()
for (de in c(TRUE, FALSE)) {
  tag <- if (de) "deesc" else "nodeesc"
  tpt[[length(tpt) + 1]] <- tpt_case(paste0("start_", tag), 4, "", c(3, 3, 3), de)
  tpt[[length(tpt) + 1]] <- tpt_case(paste0("one_dlt_", tag), 5, "1NNN 2NTN", c(3, 3), de)
  tpt[[length(tpt) + 1]] <- tpt_case(paste0("top_", tag), 3, "1NNN 2NNN", c(3, 3), de)
  tpt[[length(tpt) + 1]] <- tpt_case(paste0("too_toxic_above_", tag), 4, "1NNN 2NNN 3NTT", c(3, 3, 3), de)
  tpt[[length(tpt) + 1]] <- tpt_case(paste0("first_dose_", tag), 3, "1NNT", c(3, 3), de)
  tpt[[length(tpt) + 1]] <- tpt_case(paste0("partial_", tag), 4, "1NNN 2N", c(2, 3), de)
}
for (i in 1:12) {
  k <- sample(3:6, 1); de <- runif(1) < 0.6
  f <- get_three_plus_three(num_doses = k, allow_deescalate = de)
  h <- history(f, rand_curve(k, 0.25), sample(1:5, 1), 3)
  tpt[[length(tpt) + 1]] <- tpt_case(paste0("random_", i), k, to_string(h$dose, h$tox), c(3, 3), de)
}
write_fixture(tpt, "three_plus_three")

# ---------------------------------------------------------------- BOIN
boin_case <- function(label, num_doses, target, previous, sizes, next_dose = NULL) {
  f <- get_boin(num_doses = num_doses, target = target)
  p <- f %>% get_dose_paths(cohort_sizes = sizes, previous_outcomes = previous, next_dose = next_dose)
  list(label = label, args = list(levels = num_doses, target = target, previous = previous, cohort_sizes = sizes,
                                  next_dose = next_dose), nodes = unname(escalation_nodes(p)))
}
boin <- list(
  boin_case("start", 5, 0.25, "", c(3, 3, 3)),
  boin_case("start_next_dose_2", 5, 0.3, "", c(3, 3), next_dose = 2),
  boin_case("one_dlt", 5, 0.25, "1NNN 2NTN", c(3, 3)),
  boin_case("eliminate_dose_1", 4, 0.2, "1NTT", c(3, 3)),
  boin_case("eliminate_above", 5, 0.25, "1NNN 2NNN 3TTN", c(3, 3)),
  boin_case("singletons", 4, 0.3, "1N 1N 2T", c(1, 1, 1, 1)),
  boin_case("pairs", 6, 0.33, "1NN 2NN 3NT", c(2, 2, 2))
)
for (i in 1:16) {
  k <- sample(3:6, 1); t <- round(runif(1, 0.15, 0.4), 2); size <- sample(c(1, 2, 3, 3, 3, 4), 1)
  f <- get_boin(num_doses = k, target = t)
  h <- history(f, rand_curve(k, t), sample(1:8, 1), size)
  sizes <- rep(size, if (size <= 2) 3 else 2)
  boin[[length(boin) + 1]] <- boin_case(paste0("random_", i), k, t, to_string(h$dose, h$tox), sizes)
}
write_fixture(boin, "boin")

# ---------------------------------------------------------------- CRM (escalation get_dfcrm)
crm_case <- function(label, skeleton, target, previous, sizes, dont_skip = FALSE, model = "empiric",
                     next_dose = NULL) {
  f <- get_dfcrm(skeleton = skeleton, target = target, model = model)
  if (dont_skip) f <- f %>% dont_skip_doses(when_escalating = TRUE)
  p <- f %>% get_dose_paths(cohort_sizes = sizes, previous_outcomes = previous, next_dose = next_dose)
  list(label = label, args = list(skeleton = skeleton, target = target, previous = previous, cohort_sizes = sizes,
                                  dont_skip = dont_skip, model = model, next_dose = next_dose),
       nodes = unname(escalation_nodes(p)))
}
sk5 <- getprior(0.05, 0.25, 3, 5)
crm_cases <- list(
  crm_case("start_dose_1", sk5, 0.25, "", c(3, 3), next_dose = 1),
  crm_case("start_dose_1_dont_skip", sk5, 0.25, "", c(3, 3, 3), dont_skip = TRUE, next_dose = 1),
  crm_case("one_dlt", sk5, 0.25, "1NNN 2NTN", c(3, 3)),
  crm_case("one_dlt_dont_skip", sk5, 0.25, "1NNN 2NTN", c(3, 3), dont_skip = TRUE),
  crm_case("logistic", getprior(0.05, 0.25, 3, 5, model = "logistic"), 0.25, "1NNN 2NNN 3NTT", c(3, 3),
           model = "logistic"),
  crm_case("singletons", getprior(0.06, 0.3, 2, 4), 0.3, "1N 2N 3T", c(1, 1, 1, 1), dont_skip = TRUE)
)
for (i in 1:14) {
  k <- sample(4:6, 1); t <- round(runif(1, 0.15, 0.35), 2); model <- sample(c("empiric", "logistic"), 1)
  sk <- getprior(round(runif(1, 0.03, min(0.08, 0.5 * t)), 3), t, sample(1:k, 1), k, model = model)
  size <- sample(c(1, 2, 3, 3), 1); ds <- runif(1) < 0.5
  f <- get_dfcrm(skeleton = sk, target = t, model = model) %>% dont_skip_doses(when_escalating = TRUE)
  h <- history(f, rand_curve(k, t), sample(1:6, 1), size)
  crm_cases[[length(crm_cases) + 1]] <- crm_case(paste0("random_", i), sk, t, to_string(h$dose, h$tox),
                                                 rep(size, if (size == 1) 3 else 2), dont_skip = ds, model = model)
}
write_fixture(crm_cases, "crm")

# ---------------------------------------------------------------- dtpcrm
dtp_case <- function(label, skeleton, target, prev_dose, prev_tox, sizes, next_dose = NULL,
                     no_skip_esc = TRUE, no_skip_deesc = TRUE, global_coherent_esc = TRUE) {
  if (is.null(next_dose))
    next_dose <- applied_crm(skeleton, target, prev_tox, prev_dose, no_skip_esc = no_skip_esc,
                             no_skip_deesc = no_skip_deesc, global_coherent_esc = global_coherent_esc)$mtd
  tab <- calculate_dtps(next_dose, sizes, prev_tox = prev_tox, prev_dose = prev_dose, dose_func = applied_crm,
                        prior = skeleton, target = target, no_skip_esc = no_skip_esc,
                        no_skip_deesc = no_skip_deesc, global_coherent_esc = global_coherent_esc)
  nodes <- list()
  for (r in seq_len(nrow(tab))) {
    path <- ""; dose <- tab$D0[r]
    for (j in seq_along(sizes)) {
      t <- tab[[paste0("T", j)]][r]
      path <- trimws(paste(path, paste0(dose, letters_for(sizes[j], t))))
      dose <- tab[[paste0("D", j)]][r]
      nodes[[path]] <- list(path = path, next_dose = as.integer(dose), `continue` = TRUE)
    }
  }
  list(label = label, args = list(skeleton = skeleton, target = target, prev_dose = prev_dose, prev_tox = prev_tox,
                                  cohort_sizes = sizes, next_dose = next_dose, no_skip_esc = no_skip_esc,
                                  no_skip_deesc = no_skip_deesc, global_coherent_esc = global_coherent_esc),
       nodes = unname(nodes))
}
dtp <- list(
  dtp_case("package_example", c(0.1, 0.2, 0.5), 0.15, c(2, 2, 2), c(0, 0, 0), c(2, 3)),
  dtp_case("start_dose_1", sk5, 0.25, integer(0), integer(0), c(3, 3), next_dose = 1),
  dtp_case("one_dlt", sk5, 0.25, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 1, 0), c(3, 3)),
  dtp_case("incoherent_allowed", sk5, 0.25, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 1, 1, 0), c(3, 3),
           global_coherent_esc = FALSE),
  dtp_case("high_start_skip_down", sk5, 0.25, c(4, 4, 4), c(1, 1, 1), c(3, 3)),
  # 1/4 at dose 2 equals the target: global coherence blocks only a rate above it
  dtp_case("rate_equals_target", sk5, 0.25, c(1, 1, 2, 2, 2, 2), c(0, 0, 0, 1, 0, 0), c(2, 2)),
  dtp_case("rate_equals_target_fours", getprior(0.05, 0.25, 4, 5), 0.25, c(1, 1, 1, 1), c(0, 0, 0, 0), c(4, 4))
)
for (i in 1:14) {
  k <- sample(4:6, 1); t <- round(runif(1, 0.15, 0.35), 2)
  sk <- getprior(round(runif(1, 0.03, min(0.08, 0.5 * t)), 3), t, sample(1:k, 1), k)
  size <- sample(c(1, 2, 3, 3), 1)
  f <- get_dfcrm(skeleton = sk, target = t) %>% dont_skip_doses(when_escalating = TRUE)
  h <- history(f, rand_curve(k, t), sample(1:6, 1), size, start = sample(1:2, 1))
  dtp[[length(dtp) + 1]] <- dtp_case(paste0("random_", i), sk, t, h$dose, h$tox, rep(size, if (size == 1) 3 else 2),
                                     no_skip_esc = runif(1) < 0.8, no_skip_deesc = runif(1) < 0.7,
                                     global_coherent_esc = runif(1) < 0.7)
}
write_fixture(dtp, "dtpcrm")

# ---------------------------------------------------------------- TITE: pending resolutions, then cohorts
# decide(dose, tox, followup, current) -> list(next_dose, continue)
tite_tree <- function(dose, tox, followup, window, sizes, decide) {
  nodes <- list()
  add <- function(path, d) nodes[[length(nodes) + 1]] <<- list(path = path, next_dose = d$next_dose, `continue` = d$cont)
  current <- tail(dose, 1)
  grow <- function(path, dose, tox, followup, level, d) {
    if (level > length(sizes) || !d$cont) return(invisible())
    for (t in 0:sizes[level]) {
      nd <- c(dose, rep(d$next_dose, sizes[level])); nt <- c(tox, rep(0, sizes[level] - t), rep(1, t))
      nf <- c(followup, rep(window, sizes[level]))
      p <- trimws(paste(path, paste0(d$next_dose, letters_for(sizes[level], t))))
      r <- decide(nd, nt, nf, d$next_dose)
      add(p, r)
      grow(p, nd, nt, nf, level + 1, r)
    }
  }
  root <- decide(dose, tox, followup, current)
  add("", root)
  pend <- which(tox == 0 & followup < window)
  if (length(pend) == 0) {
    grow("", dose, tox, followup, 1, root)
  } else {
    combos <- expand.grid(rep(list(c("N", "T")), length(pend)), stringsAsFactors = FALSE)
    for (r in seq_len(nrow(combos))) {
      l <- unlist(combos[r, ]); nt <- tox; nf <- followup
      nt[pend[l == "T"]] <- 1; nf[pend[l == "N"]] <- window
      p <- paste0("P:", paste(l, collapse = ""))
      d <- decide(dose, nt, nf, current)
      add(p, d)
      grow(p, dose, nt, nf, 1, d)
    }
  }
  nodes
}
titecrm_decider <- function(skeleton, target, window, scheme, dont_skip) function(dose, tox, followup, current) {
  pend <- tox == 0 & followup < window
  if (any(pend)) {
    if (dont_skip) {
      # escalation's TITE-CRM with dont_skip_doses, on linear weights
      w <- ifelse(tox == 1, 1, pmin(followup / window, 1))
      f <- get_dfcrm_tite(skeleton = skeleton, target = target) %>% dont_skip_doses(when_escalating = TRUE) %>%
        fit(tibble(dose = dose, tox = tox, weight = w))
      return(list(next_dose = recommended_dose(f), cont = continue(f)))
    }
    fit <- titecrm(skeleton, target, tox, dose, followup = followup, obswin = window, scheme = scheme)
    return(list(next_dose = fit$mtd, cont = TRUE))
  }
  # everyone fully followed: titecrm equals crm
  if (dont_skip) {
    f <- get_dfcrm(skeleton = skeleton, target = target) %>% dont_skip_doses(when_escalating = TRUE) %>%
      fit(to_string(dose, tox))
    return(list(next_dose = recommended_dose(f), cont = continue(f)))
  }
  list(next_dose = crm(skeleton, target, tox, dose)$mtd, cont = TRUE)
}
titeboin_decider <- function(target, ndose, window, maxpen, extrasafe, n.earlystop) function(dose, tox, followup, current) {
  pend <- tox == 0 & followup < window
  n <- tabulate(dose, ndose); y <- tabulate(dose[tox == 1], ndose); npend <- tabulate(dose[pend], ndose)
  ft <- vapply(1:ndose, function(k) sum(pmin(followup, window)[pend & dose == k]), 0)
  res <- next_TITE_QuasiBOIN(target, n, npend, y, ft, current, maxt = window, extrasafe = extrasafe,
                             n.earlystop = n.earlystop, maxpen = maxpen)
  if (res$earlystop == 1 || res$stop == 1) return(list(next_dose = NA, cont = FALSE))
  if (res$pending == 1) return(list(next_dose = current, cont = FALSE))  # suspended
  list(next_dose = res$d, cont = TRUE)
}
tite_cases <- list()
tite_add <- function(label, design, args, dose, tox, followup, window, sizes, decide) {
  tite_cases[[length(tite_cases) + 1]] <<- list(
    label = label, design = design,
    args = c(args, list(dose = dose, tox = tox, followup = followup, window = window, cohort_sizes = sizes)),
    nodes = tite_tree(dose, tox, followup, window, sizes, decide))
}
for (ds in c(FALSE, TRUE)) {
  tite_add(paste0("crm_two_pending", if (ds) "_dont_skip" else ""), "tite-crm",
           list(skeleton = sk5, target = 0.25, scheme = "linear", dont_skip = ds),
           c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 1, 0), c(28, 28, 28, 20, 9, 6), 28, c(3, 3),
           titecrm_decider(sk5, 0.25, 28, "linear", ds))
}
tite_add("crm_adaptive", "tite-crm", list(skeleton = sk5, target = 0.25, scheme = "adaptive", dont_skip = FALSE),
         c(1, 1, 1, 2, 2, 2, 3), c(0, 0, 1, 0, 0, 0, 0), c(28, 28, 12, 28, 15, 10, 3), 28, c(3),
         titecrm_decider(sk5, 0.25, 28, "adaptive", FALSE))
tite_add("boin_suspend", "tite-boin", list(target = 0.25, levels = 5, max_pending = 0.5, extrasafe = FALSE, n_earlystop = 100),
         c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 0, 0), c(28, 28, 28, 25, 4, 2), 28, c(3, 3),
         titeboin_decider(0.25, 5, 28, 0.5, FALSE, 100))
tite_add("boin_dose_1_toxic", "tite-boin", list(target = 0.3, levels = 4, max_pending = 0.5, extrasafe = TRUE, n_earlystop = 100),
         c(1, 1, 1, 1), c(1, 0, 0, 0), c(5, 28, 14, 7), 28, c(3, 3),
         titeboin_decider(0.3, 4, 28, 0.5, TRUE, 100))
for (i in 1:14) {
  k <- sample(3:6, 1); t <- round(runif(1, 0.15, 0.35), 2); w <- sample(c(28, 42), 1)
  npat <- sample(4:15, 1); start <- sample(1:2, 1)
  dose <- pmin(k, pmax(1, start + cumsum(c(0, sample(c(0, 0, 1), npat - 1, replace = TRUE)))))
  tox <- rbinom(npat, 1, rand_curve(k, t)[dose])
  npend <- sample(1:min(4, npat), 1)
  followup <- c(rep(w, npat - npend), round(sort(runif(npend, 1, w - 1), decreasing = TRUE), 1))
  followup[tox == 1] <- pmin(followup[tox == 1], round(runif(sum(tox == 1), 1, w - 1), 1))
  size <- sample(c(1, 2, 3), 1); sizes <- rep(size, if (size == 3) 1 else 2)
  if (i %% 2 == 1) {
    sk <- getprior(round(runif(1, 0.03, min(0.08, 0.5 * t)), 3), t, sample(1:k, 1), k)
    ds <- runif(1) < 0.5; scheme <- if (ds) "linear" else sample(c("linear", "adaptive"), 1)
    tite_add(paste0("random_", i), "tite-crm", list(skeleton = sk, target = t, scheme = scheme, dont_skip = ds),
             dose, tox, followup, w, sizes, titecrm_decider(sk, t, w, scheme, ds))
  } else {
    mp <- sample(c(0.5, 0.5, 0.34, 0.67), 1); es <- runif(1) < 0.3
    tite_add(paste0("random_", i), "tite-boin", list(target = t, levels = k, max_pending = mp, extrasafe = es,
                                                     n_earlystop = 100),
             dose, tox, followup, w, sizes, titeboin_decider(t, k, w, mp, es, 100))
  }
}
write_fixture(tite_cases, "tite")
