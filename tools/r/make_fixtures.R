# Reference fixtures for dosewatch's dose-finding designs, written by the real R packages.
#
#   Rscript tools/r/make_fixtures.R [LIBRARY]
#
# LIBRARY is a private library holding BOIN 2.7.2, dfcrm 0.2-2.1 and TITEgBOIN 0.4.0 installed
# from their CRAN sources (default /tmp/rlib); jsonlite comes from Debian (r-cran-jsonlite).
# Writes tests/fixtures/dosefinding/*.json (hand-picked edge cases + random cases, seed 20240607)
# and tests/fixtures/dosefinding/heldout/*.json (random cases only, different seed and parameter
# ranges), which the tests use for the final "cases the tests did not write" check.
args <- commandArgs(trailingOnly = TRUE)
lib <- if (length(args) >= 1) args[1] else "/tmp/rlib"
.libPaths(c(lib, .libPaths()))
suppressPackageStartupMessages({
  library(BOIN); library(dfcrm); library(TITEgBOIN); library(jsonlite)
})
stopifnot(packageVersion("BOIN") == "2.7.2", packageVersion("dfcrm") == "0.2.2.1",
          packageVersion("TITEgBOIN") == "0.4.0")

out_dir <- "tests/fixtures/dosefinding"
write_fixture <- function(x, dir, name) {
  dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  meta <- list(generator = "tools/r/make_fixtures.R", R = R.version.string,
               packages = list(BOIN = as.character(packageVersion("BOIN")),
                               dfcrm = as.character(packageVersion("dfcrm")),
                               TITEgBOIN = as.character(packageVersion("TITEgBOIN"))))
  writeLines(toJSON(list(meta = meta, cases = x), auto_unbox = TRUE, digits = NA, na = "null",
                    null = "null", pretty = TRUE),
             file.path(dir, paste0(name, ".json")))
}
num_or_null <- function(x) if (is.null(x) || is.na(x)) NA else x
rnd <- function(x, k = 3) round(x, k)

# ---------------------------------------------------------------- BOIN get.boundary
boundary_case <- function(target, cohortsize, ncohort, n.earlystop = 100, p.saf = NULL, p.tox = NULL,
                          cutoff.eli = 0.95, extrasafe = FALSE, offset = 0.05) {
  if (is.null(p.saf)) p.saf <- 0.6 * target
  if (is.null(p.tox)) p.tox <- 1.4 * target
  args <- list(target = target, cohort_size = cohortsize, max_cohorts = ncohort, n_earlystop = n.earlystop,
               p_saf = p.saf, p_tox = p.tox, cutoff_eli = cutoff.eli, extrasafe = extrasafe, offset = offset)
  res <- tryCatch(get.boundary(target, ncohort, cohortsize, n.earlystop = n.earlystop, p.saf = p.saf,
                               p.tox = p.tox, cutoff.eli = cutoff.eli, extrasafe = extrasafe, offset = offset),
                  error = function(e) e)
  if (inherits(res, "error")) return(list(args = args, error = conditionMessage(res)))
  tab <- if (cohortsize > 1) res$full_boundary_tab else res$boundary_tab
  tab <- matrix(tab, nrow = 4)
  rows <- lapply(seq_len(ncol(tab)), function(j)
    list(n = tab[1, j], escalate_max = tab[2, j], deescalate_min = tab[3, j], eliminate_min = num_or_null(tab[4, j])))
  if (extrasafe) {
    sb <- matrix(res$stop_boundary, nrow = 2)
    for (j in seq_len(ncol(sb))) rows[[j]]$stop_min <- num_or_null(sb[2, j])
  }
  list(args = args, lambda_e = res$lambda_e, lambda_d = res$lambda_d, table = rows)
}

# ---------------------------------------------------------------- BOIN select.mtd
# The isotonic estimates select.mtd uses are local; an exit tracer copies them out.
captured <- NULL
trace("select.mtd", exit = quote(assign("captured",
  list(phat = if (exists("adm.index", inherits = FALSE)) phat else NULL,
       adm = if (exists("adm.index", inherits = FALSE)) adm.index else NULL), envir = .GlobalEnv)),
  print = FALSE)
select_case <- function(label, target, n, y, cutoff.eli = 0.95, extrasafe = FALSE, offset = 0.05,
                        boundMTD = FALSE, p.tox = 1.4 * target) {
  captured <<- NULL
  res <- select.mtd(target, n, y, cutoff.eli = cutoff.eli, extrasafe = extrasafe, offset = offset,
                    boundMTD = boundMTD, p.tox = p.tox)
  iso <- rep(NA, length(n))
  # without boundMTD, phat holds every admissible dose's isotonic estimate plus i*1e-10
  if (!boundMTD && !is.null(captured$adm)) iso[captured$adm] <- captured$phat - seq_along(captured$phat) * 1e-10
  list(label = label, args = list(target = target, n = n, y = y, cutoff_eli = cutoff.eli, extrasafe = extrasafe,
                                  offset = offset, bound_mtd = boundMTD, p_tox = p.tox),
       mtd = if (res$MTD == 99) NA else res$MTD, isotonic = iso)
}

# ---------------------------------------------------------------- BOIN decisions inside get.oc
# Tracers before step 2 (cohort starts: d is the previous decision) and step 3 (cohort added)
# of get.oc's cohort loop record every state get.oc decides on and the dose it moves to.
trace_log <- list()
loop_at <- function() {
  b <- body(get.oc)
  tl <- which(vapply(seq_along(b), function(i) grepl("^for \\(trial", deparse(b[[i]])[1]), TRUE))
  tb <- b[[tl]][[4]]
  cl <- which(vapply(seq_along(tb), function(j) grepl("^for \\(i in 1:ncohort", deparse(tb[[j]])[1]), TRUE))
  list(c(tl, 4, cl, 4, 2), c(tl, 4, cl, 4, 3))
}
trace("get.oc", tracer = quote(trace_log[[length(trace_log) + 1]] <<- list(trial = trial, d = d, n = n, y = y)),
      at = loop_at(), print = FALSE)
boin_decisions <- function(target, p.true, ncohort, cohortsize, n.earlystop = 100, extrasafe = FALSE,
                           cutoff.eli = 0.95, offset = 0.05, ntrial = 5, seed = 1) {
  trace_log <<- list()
  invisible(capture.output(get.oc(target, p.true, ncohort, cohortsize, n.earlystop = n.earlystop,
                                  extrasafe = extrasafe, cutoff.eli = cutoff.eli, offset = offset,
                                  ntrial = ntrial, seed = seed)))
  out <- list()
  trials <- vapply(trace_log, function(r) r$trial, 1)
  for (tr in unique(trials)) {
    recs <- trace_log[trials == tr]
    k <- 2
    while (k <= length(recs)) {
      s <- recs[[k]]
      nxt <- if (k + 1 <= length(recs)) recs[[k + 1]]$d else NA
      out[[length(out) + 1]] <- list(n = s$n, y = s$y, current = s$d, next_dose = nxt)
      k <- k + 2
    }
  }
  list(args = list(target = target, n_levels = length(p.true), n_earlystop = n.earlystop, extrasafe = extrasafe,
                   cutoff_eli = cutoff.eli, offset = offset),
       p_true = p.true, cohort_size = cohortsize, ncohort = ncohort, decisions = out)
}

# ---------------------------------------------------------------- dfcrm
prior_case <- function(halfwidth, target, nu, nlevel, model = "empiric", intcpt = 3) {
  sk <- getprior(halfwidth, target, nu, nlevel, model = model, intcpt = intcpt)
  list(args = list(halfwidth = halfwidth, target = target, nu = nu, levels = nlevel, model = model, intercept = intcpt),
       skeleton = sk)
}
fit_out <- function(fit) list(estimate = fit$estimate, post_var = fit$post.var, ptox = fit$ptox,
                              ptox_lower = fit$ptoxL, ptox_upper = fit$ptoxU, mtd = fit$mtd)
crm_case <- function(label, skeleton, target, level, tox, model = "empiric", scale = sqrt(1.34), intcpt = 3) {
  fit <- crm(skeleton, target, tox, level, model = model, scale = scale, intcpt = intcpt)
  c(list(label = label, args = list(skeleton = skeleton, target = target, level = level, tox = tox, model = model,
                                    prior_sd = scale, intercept = intcpt)), fit_out(fit))
}
tite_case <- function(label, skeleton, target, level, tox, followup, obswin, scheme = "linear",
                      model = "empiric", scale = sqrt(1.34), intcpt = 3) {
  fit <- titecrm(skeleton, target, tox, level, followup = followup, obswin = obswin, scheme = scheme,
                 model = model, scale = scale, intcpt = intcpt)
  c(list(label = label, args = list(skeleton = skeleton, target = target, level = level, tox = tox, followup = followup,
                                    window = obswin, scheme = scheme, model = model, prior_sd = scale,
                                    intercept = intcpt)), fit_out(fit), list(weights = fit$weights))
}

# ---------------------------------------------------------------- TITEgBOIN
tite_boin_case <- function(label, target, level, tox, followup, d, maxt, ndose, extrasafe = FALSE,
                           n.earlystop = 100, maxpen = 0.5, cutoff.eli = 0.95, offset = 0.05) {
  # patient level -> the per-dose summaries get_oc_TITE_QuasiBOIN builds (its timing prior makes
  # the follow-up transform the identity): pending = no DLT and follow-up shorter than the window
  pend <- tox == 0 & followup < maxt
  n <- tabulate(level, ndose); y <- tabulate(level[tox == 1], ndose)
  npend <- tabulate(level[pend], ndose)
  ft <- vapply(1:ndose, function(k) sum(pmin(followup, maxt)[pend & level == k]), 0)
  res <- next_TITE_QuasiBOIN(target, n, npend, y, ft, d, maxt = maxt, cutoff.eli = cutoff.eli,
                             extrasafe = extrasafe, offset = offset, n.earlystop = n.earlystop, maxpen = maxpen)
  mtd <- select_mtd_TITE_QuasiBOIN(target, y, n, cutoff.eli = cutoff.eli, extrasafe = extrasafe, offset = offset)
  list(label = label, args = list(target = target, level = level, tox = tox, followup = followup, current = d,
                                  window = maxt, n_levels = ndose, extrasafe = extrasafe, n_earlystop = n.earlystop,
                                  max_pending = maxpen, cutoff_eli = cutoff.eli, offset = offset),
       counts = list(n = n, y = y, npend = npend, ft = ft),
       next_dose = res$d, pending = res$pending, earlystop = res$earlystop, stop = res$stop,
       elimineed = res$elimineed, elimi = res$elimi, mtd = if (mtd == 99) NA else mtd)
}

# ---------------------------------------------------------------- random generators
rand_target <- function(lo = 0.1, hi = 0.4) rnd(runif(1, lo, hi), 2)
rand_curve <- function(k, target) sort(pmin(0.95, pmax(0.01, target * exp(rnorm(1, 0, 0.5)) * exp(cumsum(c(0, runif(k - 1, 0.1, 0.7)))) / exp(0.4 * (k - 1) / 2))))
rand_counts <- function(k, target) {
  p <- rand_curve(k, target)
  n <- sample(c(0, 0, 1, 2, 3, 3, 3, 4, 6, 6, 9, 12), k, replace = TRUE)
  list(n = n, y = rbinom(k, n, p))
}
rand_patients <- function(k, target, npat) {
  p <- rand_curve(k, target)
  start <- sample(1:min(2, k), 1)
  level <- pmin(k, pmax(1, start + cumsum(c(0, sample(c(-1, 0, 0, 1, 1), npat - 1, replace = TRUE)))))
  list(level = level, tox = rbinom(npat, 1, p[level]))
}
rand_skeleton <- function(k, target, model = "empiric") {
  hw <- rnd(runif(1, 0.03, min(0.1, target * 0.6)), 3)
  getprior(hw, target, sample(1:k, 1), k, model = model)
}

random_sets <- function(seed, ncases, tlo, thi) {
  set.seed(seed)
  sets <- list(boundaries = list(), select_mtd = list(), boin_decisions = list(), skeleton = list(),
               crm = list(), titecrm = list(), tite_boin = list())
  for (i in 1:ncases) {
    t <- rand_target(tlo, thi)
    es <- runif(1) < 0.4 && t <= 0.5
    sets$boundaries[[i]] <- boundary_case(t, sample(1:4, 1), sample(3:12, 1),
                                          n.earlystop = sample(c(100, 100, 9, 12, 18), 1),
                                          cutoff.eli = sample(c(0.95, 0.95, 0.9), 1), extrasafe = es,
                                          offset = sample(c(0.05, 0.1), 1))
    k <- sample(3:7, 1); cc <- rand_counts(k, t)
    sets$select_mtd[[i]] <- select_case(paste0("random_", i), t, cc$n, cc$y, extrasafe = runif(1) < 0.3,
                                        boundMTD = runif(1) < 0.3, cutoff.eli = sample(c(0.95, 0.9), 1))
    k <- sample(3:8, 1)
    sets$skeleton[[i]] <- prior_case(rnd(runif(1, 0.02, min(0.1, t * 0.6)), 3), t, sample(1:k, 1), k,
                                     model = sample(c("empiric", "logistic"), 1), intcpt = sample(c(3, 3, 2, 4), 1))
    model <- sample(c("empiric", "logistic"), 1)
    k <- sample(4:6, 1); sk <- rand_skeleton(k, t, model)
    pp <- rand_patients(k, t, sample(1:30, 1))
    sets$crm[[i]] <- crm_case(paste0("random_", i), sk, t, pp$level, pp$tox, model = model,
                              scale = sample(c(sqrt(1.34), sqrt(1.34), 1, 2), 1))
    w <- sample(c(28, 42, 56), 1)
    pp <- rand_patients(k, t, sample(2:24, 1))
    fu <- round(runif(length(pp$level), 0, 1.2 * w), 1)
    fu[pp$tox == 1] <- round(runif(sum(pp$tox), 1, w - 1), 1)
    sets$titecrm[[i]] <- tite_case(paste0("random_", i), sk, t, pp$level, pp$tox, fu, w,
                                   scheme = sample(c("linear", "adaptive"), 1), model = model)
    k <- sample(3:6, 1)
    pp <- rand_patients(k, t, sample(3:24, 1))
    fu <- round(runif(length(pp$level), 0, 1.3 * w), 1)
    sets$tite_boin[[i]] <- tite_boin_case(paste0("random_", i), t, pp$level, pp$tox, fu, tail(pp$level, 1), w, k,
                                          extrasafe = runif(1) < 0.3, n.earlystop = sample(c(100, 100, 9, 12), 1),
                                          maxpen = sample(c(0.5, 0.5, 0.33, 0.65), 1))
  }
  for (i in 1:max(3, ncases %/% 10)) {
    t <- rand_target(tlo, min(thi, 0.45)); k <- sample(3:6, 1)
    sets$boin_decisions[[i]] <- boin_decisions(t, rand_curve(k, t), sample(6:12, 1), sample(1:3, 1),
                                               n.earlystop = sample(c(100, 9, 12), 1), extrasafe = runif(1) < 0.4,
                                               ntrial = 20, seed = sample(1:10000, 1))
  }
  sets
}

# ---------------------------------------------------------------- hand-picked edge cases
hand <- list()
hand$boundaries <- list(
  boundary_case(0.3, 3, 10), boundary_case(0.25, 3, 10), boundary_case(0.2, 1, 30),
  boundary_case(0.33, 3, 10, extrasafe = TRUE), boundary_case(0.25, 3, 10, n.earlystop = 12),
  boundary_case(0.3, 2, 10, p.saf = 0.2, p.tox = 0.4), boundary_case(0.05, 3, 10, extrasafe = TRUE),
  boundary_case(0.6, 3, 10), boundary_case(0.6, 3, 10, extrasafe = TRUE),  # package error: stopneed
  boundary_case(0.5, 3, 10, extrasafe = TRUE, offset = 0.1), boundary_case(0.25, 4, 8, cutoff.eli = 0.9))
hand$select_mtd <- list(
  select_case("tie_pooled_above_target_all_equal", 0.25, rep(6, 5), rep(2, 5)),
  select_case("tie_pooled_above_target_all_equal_boundmtd", 0.25, rep(6, 5), rep(2, 5), boundMTD = TRUE),
  select_case("tie_below_target_all_equal", 0.25, rep(6, 5), rep(1, 5)),
  select_case("pava_multiple_violations", 0.3, c(3, 6, 9, 6, 3), c(1, 1, 3, 1, 2)),
  select_case("zero_patients_gap_dose2", 0.3, c(3, 0, 6, 3, 0), c(0, 0, 1, 2, 0)),
  select_case("elimination_mid_dose", 0.25, c(3, 6, 9, 3, 0), c(0, 1, 2, 3, 0)),
  select_case("dose1_eliminated", 0.25, c(6, 0, 0), c(4, 0, 0)),
  select_case("extrasafe_dose1", 0.25, c(6, 3, 0), c(3, 0, 0), extrasafe = TRUE),
  select_case("nothing_treated_below_elimination", 0.25, c(0, 3, 3), c(0, 3, 3)),
  select_case("single_dose", 0.3, c(0, 3, 0, 0), c(0, 1, 0, 0)),
  select_case("boundmtd_cuts", 0.3, c(3, 3, 6, 6), c(0, 0, 2, 3), boundMTD = TRUE))
hand$skeleton <- list(
  prior_case(0.05, 0.25, 3, 5), prior_case(0.05, 0.25, 3, 5, "logistic"), prior_case(0.04, 0.2, 1, 6),
  prior_case(0.06, 0.3, 6, 6, "logistic"), prior_case(0.05, 0.25, 2, 4, "logistic", intcpt = 2),
  prior_case(0.02, 0.1, 4, 8))
sk5 <- getprior(0.05, 0.25, 3, 5)
hand$crm <- list(
  crm_case("one_dlt_after_escalation", sk5, 0.25, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 1, 0)),
  crm_case("one_dlt_after_escalation_logistic", sk5, 0.25, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 1, 0), "logistic"),
  crm_case("no_dlt", sk5, 0.25, c(1, 1, 1), c(0, 0, 0)),
  crm_case("heavy_toxicity_lowest", sk5, 0.25, c(1, 1, 1), c(1, 1, 1)),
  crm_case("heavy_toxicity_lowest_logistic", sk5, 0.25, c(1, 1, 1), c(1, 1, 1), "logistic"),
  crm_case("thirty_patients", sk5, 0.25, rep(c(1, 2, 3, 3, 4, 3, 3, 4, 4, 3), each = 3),
           c(0,0,0, 0,0,0, 0,1,0, 0,0,0, 1,1,0, 0,0,0, 1,0,0, 0,1,0, 1,0,0, 0,0,1)),
  crm_case("prior_sd_1", sk5, 0.25, c(1, 2, 3, 3), c(0, 0, 1, 1), scale = 1))
hand$titecrm <- list(
  tite_case("all_complete_equals_crm", sk5, 0.25, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 1, 0), rep(28, 6), 28),
  tite_case("linear_partial", sk5, 0.25, c(1, 1, 1, 2, 2, 2, 3), c(0, 0, 0, 0, 1, 0, 0), c(40, 35, 30, 20, 10, 7, 1), 28),
  tite_case("adaptive_partial", sk5, 0.25, c(1, 1, 1, 2, 2, 2, 3, 3), c(0, 0, 1, 0, 1, 0, 0, 0),
            c(40, 35, 12, 20, 5, 7, 1, 0), 28, scheme = "adaptive"),
  tite_case("adaptive_no_dlt", sk5, 0.25, c(1, 1, 2), c(0, 0, 0), c(28, 14, 3), 28, scheme = "adaptive"),
  tite_case("adaptive_logistic", sk5, 0.25, c(1, 2, 2, 3, 3), c(0, 1, 0, 1, 0), c(50, 3, 20, 9, 2), 28,
            scheme = "adaptive", model = "logistic"))
hand$tite_boin <- list(
  tite_boin_case("suspend_many_pending", 0.3, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 0, 0), c(30, 30, 30, 10, 5, 1), 2, 28, 5),
  tite_boin_case("escalate_with_pending", 0.3, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 0, 0, 0), c(30, 30, 30, 28, 28, 5), 2, 28, 5),
  tite_boin_case("deescalate_dlt", 0.3, c(1, 1, 1, 2, 2, 2), c(0, 0, 0, 1, 1, 0), c(30, 30, 30, 10, 5, 1), 2, 28, 5),
  tite_boin_case("dose1_pending_deescalate", 0.3, c(1, 1, 1), c(1, 1, 0), c(3, 5, 2), 1, 28, 5),
  tite_boin_case("dose1_eliminated", 0.25, c(1, 1, 1), c(1, 1, 1), c(3, 5, 2), 1, 28, 4),
  tite_boin_case("eliminated_above", 0.25, c(1, 1, 1, 2, 2, 2, 3, 3, 3), c(0, 0, 0, 0, 0, 0, 1, 1, 1),
                 rep(30, 9), 3, 28, 4),
  tite_boin_case("earlystop_n", 0.3, rep(2, 12), c(rep(0, 9), 1, 1, 1), rep(30, 12), 2, 28, 3, n.earlystop = 12))
hand$boin_decisions <- list(
  boin_decisions(0.25, c(0.05, 0.10, 0.20, 0.30, 0.45), 10, 3, ntrial = 30, seed = 6),
  boin_decisions(0.3, c(0.3, 0.45, 0.6), 10, 3, extrasafe = TRUE, ntrial = 30, seed = 7),
  boin_decisions(0.25, c(0.05, 0.08, 0.1, 0.12), 12, 3, n.earlystop = 12, ntrial = 30, seed = 8))

main <- random_sets(20240607, 60, 0.1, 0.4)
for (nm in names(main)) write_fixture(c(hand[[nm]], main[[nm]]), out_dir, nm)
held <- random_sets(777013, 60, 0.08, 0.5)
for (nm in names(held)) write_fixture(held[[nm]], file.path(out_dir, "heldout"), nm)
cat("wrote fixtures to", out_dir, "\n")
