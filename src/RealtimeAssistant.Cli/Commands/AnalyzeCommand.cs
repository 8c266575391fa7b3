using System.CommandLine;
using OpenCvSharp;
using RealtimeAssistant.Capture;
using RealtimeAssistant.Demo;
using RealtimeAssistant.Model;
using RealtimeAssistant.Pruning;
using RealtimeAssistant.Streaming;
using RealtimeAssistant.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra analyze`: a model's per-layer cross-modal dynamics, measured on its own inputs, and the
/// VisiPruner schedule they suggest (s, the range for L_f, the exit layer) as a loadable config.
/// </summary>
public static class AnalyzeCommand
{
    public static Command Create()
    {
        var model = App.AppModel.ModelOption();
        var images = new Option<string[]>("--images") { Description = "images to analyze (default: demo scenes of --split)", AllowMultipleArgumentsPerToken = true };
        var video = new Option<string?>("--video") { Description = "a video file whose frames to analyze instead of --images: the footage a stream will read (--frames of them, evenly spaced)" };
        var frames = new Option<int>("--frames") { DefaultValueFactory = _ => 16, Description = "frames taken from --video, evenly spaced over it" };
        var scenes = new Option<int>("--scenes") { DefaultValueFactory = _ => 64, Description = "demo scenes (and two-frame windows) when no --images; with 16 the two-frame choice swung between exits 2 and 4" };
        var split = new Option<string>("--split") { Description = "the demo scenes when no --images: validation (what the shipped schedule was chosen on) or held-out (to check a choice)", DefaultValueFactory = _ => "validation" };
        split.AcceptOnlyFromAmong("validation", "held-out");
        var prompt = new Option<string?>("--prompt") { Description = "prompt with one <image> marker (default: the model's)" };
        var decode = new Option<int>("--decode") { DefaultValueFactory = _ => 24, Description = "caption tokens compared (teacher-forced) for KL and agreement" };
        var outDir = Cli.WritesTo(new Option<string?>("--out") { Description = "folder for the plots, analysis.json and schedule.json (default: runs/analyze-TIMESTAMP)" }, folder: true);
        var agree = new Option<double>("--agreement") { DefaultValueFactory = _ => 0.98, Description = "token agreement a proposal must keep" };
        var floorAgree = new Option<double>("--floor-agreement") { DefaultValueFactory = _ => FloorAgreement, Description = "share of what a frame adds to the greedy captions (over a caption of no frame) that the frame-budget governor's earliest exit, min_exit_layer, must keep; below it the governor skips frames" };
        var device = Cli.DeviceOption();
        var dtype = Cli.DTypeOption();
        var weights = Cli.WeightsOption();
        var cmd = new Command("analyze", "Per-layer text→vision attention, filtering-test cosines, value norms and visual-KV knockouts; proposes a pruning schedule and plots it.")
            { model, images, video, frames, scenes, split, prompt, decode, outDir, agree, floorAgree, device, dtype, weights };
        return cmd.WithAction((pr, ct) =>
        {
            var dir = App.AppModel.Resolve(pr.GetValue(model));
            int nd = pr.GetValue(decode), ns = pr.GetValue(scenes);
            if (nd < 1 || ns < 1) throw new UserError("analyze: --decode and --scenes must be ≥ 1");
            double fa = pr.GetValue(floorAgree), ag = pr.GetValue(agree);
            if (!(fa >= 0 && fa <= 1) || !(ag >= 0 && ag <= 1)) throw new UserError("analyze: --agreement and --floor-agreement must be in [0, 1]");
            int nf = pr.GetValue(frames);
            if (nf is < 1 or > 10_000) throw new UserError($"analyze: --frames must be 1..10000, got {nf}");
            if (pr.GetValue(video) is not null && pr.GetValue(images) is { Length: > 0 }) throw new UserError("analyze: give --images or --video, not both");
            using var engine = Engine.Load(dir, Cli.EngineOptions(pr, device, dtype, weights));
            var mats = new List<Mat>();
            var windows = new List<DemoSample>(); // two-frame clip windows: the demo's prompts of several frames
            try
            {
                if (pr.GetValue(images) is { Length: > 0 } paths) mats.AddRange(paths.Select(Cli.ReadImage));
                else if (pr.GetValue(video) is { } file) mats.AddRange(VideoFrames(file, nf, ct));
                else
                {
                    var data = new DemoDataset(pr.GetValue(split) == "held-out" ? DemoSplit.Eval : DemoSplit.Validation); // bench pruning scores the schedule on Eval
                    for (int i = 0; i < ns; i++) { using var s = data.CaptionSample(i, DemoModelSpec.ImageSize); mats.Add(s.Image.Clone()); }
                    for (int i = 0; i < ns; i++) windows.Add(data.StreamingSample(i, 2, DemoModelSpec.ImageSize));
                }
                var a = Analyze(engine, mats, windows, pr.GetValue(prompt), nd, ag, fa, ct);
                Report(a, pr.GetValue(outDir) ?? DefaultOut(), dir);
            }
            finally { foreach (var m in mats) m.Dispose(); foreach (var w in windows) w.Dispose(); }
            return Task.FromResult(0);
        });
    }

    /// <summary>
    /// <paramref name="count"/> frames of a video, evenly spaced over it (each from the middle of its
    /// share), or one a second from the start where the container does not say how long it is.
    /// A file that ends early gives the frames it has.
    /// </summary>
    internal static List<Mat> VideoFrames(string path, int count, CancellationToken ct)
    {
        using var source = new VideoFileSource(path);
        var wanted = source.FrameCount is { } total && total > 0
            ? Enumerable.Range(0, count).Select(i => (long)((i + 0.5) * total / count)).Distinct().ToList()
            : Enumerable.Range(0, count).Select(i => (long)Math.Round(i * source.Fps)).ToList();
        var mats = new List<Mat>(wanted.Count);
        long at = 0; // the next frame a read gives
        try
        {
            foreach (var w in wanted)
            {
                // Frames between are grabbed, not read: decoded, never converted (seeking is unreliable across codecs).
                if (source.Skip(w - at, ct) < w - at || source.Read(ct) is not { } frame) break;
                mats.Add(frame.Image);
                at = w + 1;
            }
        }
        catch { foreach (var m in mats) m.Dispose(); throw; }
        if (mats.Count == 0) throw new UserError($"analyze: {Path.GetFileName(path)} gave no frame");
        return mats;
    }

    public sealed record Analysis(int Layers, int Inputs, double[] TextMass, double[] MinCos, double[] OverNorm, double[] TopNorm,
        double[] KnockKl, double[] KnockAgree, double[] ShallowKl, double[] ShallowAgree, int[] FirstFire, PruningConfig Proposal, List<string> Notes,
        List<Candidate> Candidates, List<Candidate> FrameCandidates, List<LadderRung> Ladder, double BlindCaptionAgreement, List<ResolutionRung> Resolution);

    /// <summary>The proposal held at a lower pixel bound on every image: its visual tokens and its greedy captions against the unpruned ones at full resolution.</summary>
    public sealed record ResolutionRung(long MaxPixels, double VisualTokens, double CaptionAgreement, double FrameShare);

    /// <summary>A rung of the frame-budget governor's ladder, held on every input: its greedy captions against the unpruned ones.</summary>
    public sealed record LadderRung(string Name, PruningConfig Pruning, double CaptionAgreement, double FrameShare, double KeptTokens, double Flops)
    {
        /// <summary>The layer every frame leaves at (null where the newest frame is spared, or none leaves).</summary>
        public int? EveryFrameExit => Pruning.KeepNewestFrame ? null : Pruning.ExitLayer;
    }

    /// <summary>
    /// The default floor: an exit's greedy captions must keep three quarters of what the frame adds
    /// to them (<see cref="ScheduleProposal.FrameShare"/>). On the demo model's validation windows
    /// the exits keep 0.84–0.86 down to exit 2 and 0.49 at exit 1, so 0.5 would sit on exit 1's
    /// edge; held-out windows give 0.83 and 0.50 (BENCHMARKS.md, "The governor's floor from ra analyze").
    /// </summary>
    public const double FloorAgreement = 0.75;

    static Analysis Analyze(Engine e, List<Mat> images, List<DemoSample> windows, string? prompt, int nd, double agreeTarget, double floorAgreement, CancellationToken ct)
    {
        int L = e.Text.NumHiddenLayers;
        var defaults = new PruningConfig();
        var cap = new Captioner(e);
        var userPrompt = prompt ?? (e.DefaultPrompt.Contains(e.Model.ImageMarker) ? e.DefaultPrompt : null);
        if (images.Count == 0) throw new UserError("analyze needs at least one image");
        PositionIds pos;
        List<VisualSpan> spans;
        long next;
        using (torch.inference_mode())
        {
            var first = cap.EmbedPrompt(new[] { images[0] }, userPrompt);
            (pos, spans, next) = (first.Positions, first.Spans, first.NextPosition);
            first.Embeds.Dispose();
        }
        if (spans.Select(s => s.Frame).Distinct().Count() != 1) throw new UserError($"analyze takes a prompt with one image marker, got {spans.Select(s => s.Frame).Distinct().Count()}");
        var lm = e.Language;
        var (group, start) = e.GroupPositions ? (CacheGroup.Target, 0L) : (CacheGroup.Source, next);
        double[] mass = new double[L], minCos = new double[L], over = new double[L], top = new double[L];
        double[] kKl = new double[L + 1], kAg = new double[L + 1], sKl = new double[L], sAg = new double[L];
        var firstFire = new List<int>();
        using var _ = torch.inference_mode();
        foreach (var img in images)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            var emb = Embed(img);
            // 1. Measurements on the unpruned forward.
            var meas = new AnalysisPruner(measure: true);
            var (baseLp, tokens, _) = Run(emb, meas, null);
            foreach (var p in meas.Probes.Where(p => p.Layer >= 0 && p.Layer < L))
            {
                mass[p.Layer] += p.TextMass / images.Count;
                minCos[p.Layer] += p.MinCos / images.Count;
                over[p.Layer] += (double)p.Norm.Count(n => n > defaults.TokensThreshold) / images.Count;
                top[p.Layer] += p.Norm.Max() / images.Count;
            }
            // 2. Visual-KV knockout from layer l on, and text barred from vision in layers 0..s−1.
            for (int l = 0; l <= L; l++) { var (kl, ag, _) = Compare(emb, baseLp, tokens, new AnalysisPruner(knockoutFrom: l)); kKl[l] += kl / images.Count; kAg[l] += ag / images.Count; }
            for (int s = 1; s < L; s++) { var (kl, ag, _) = Compare(emb, baseLp, tokens, new AnalysisPruner(shallow: s)); sKl[s] += kl / images.Count; sAg[s] += ag / images.Count; }
            firstFire.Add(meas.Probes.Where(p => p.MinCos < defaults.LayerThreshold).Select(p => p.Layer).DefaultIfEmpty(-1).First());
        }

        // Each image's own prompt: with dynamic resolution (Qwen2-VL) or tiling (SmolVLM) images of other
        // sizes give other token counts, positions and visual spans, and the caption starts elsewhere.
        Tensor Embed(Mat img)
        {
            var p = cap.EmbedPrompt(new[] { img }, userPrompt);
            (pos, spans) = (p.Positions, p.Spans);
            if (group == CacheGroup.Source) start = p.NextPosition;
            return p.Embeds;
        }

        (List<Tensor> Lp, List<long> Tok, PruneReport Report) Run(Tensor emb, ITokenPruner pruner, List<long>? force, PositionIds? atPos = null, List<VisualSpan>? atSpans = null)
        {
            using var cache = new KvCache(L);
            using var r = PrunedPrefill.Run(lm, emb, atPos ?? pos, atSpans ?? spans, pruner, cache);
            var lps = new List<Tensor> { lm.Logits(r.Last[0]).log_softmax(-1) };
            var toks = new List<long>();
            long p0 = start;
            for (int t = 0; t < nd; t++)
            {
                long tok = force != null ? (t < force.Count ? force[t] : -1) : lps[^1].argmax().item<long>();
                if (tok < 0 || (force == null && tok == e.Text.EosTokenId)) break;
                toks.Add(tok);
                if (t == nd - 1 || (force != null && t == force.Count - 1)) break;
                var h = lm.model.Forward(lm.model.embed_tokens.forward(torch.tensor(new[] { tok }, device: e.Device).view(1, 1)),
                    new DecoderStep { Positions = new[] { p0++ }, Cache = cache, Group = group });
                lps.Add(lm.Logits(h[0, -1]).log_softmax(-1));
            }
            return (lps, toks, r.Report);
        }
        (double Kl, double Agree, PruneReport Report) Compare(Tensor emb, List<Tensor> b, List<long> toks, ITokenPruner pruner)
        {
            var (lp, _, report) = Run(emb, pruner, toks);
            int n = Math.Min(b.Count, lp.Count);
            double kl = 0, ag = 0;
            for (int i = 0; i < n; i++)
            {
                kl += (b[i].exp() * (b[i] - lp[i])).sum().item<float>();
                ag += lp[i].argmax().item<long>() == b[i].argmax().item<long>() ? 1 : 0;
            }
            return (kl / n, ag / n, report);
        }

        // Proposal.
        var notes = new List<string>();
        int sProp = 0;
        for (int s = 1; s < L; s++) if (sAg[s] >= agreeTarget) sProp = s; else break;
        notes.Add(sProp == 0 ? $"no shallow stage keeps {agreeTarget:P0} agreement: text reads vision from layer 0 (s = 0)"
            : $"text can be barred from vision in layers 0..{sProp - 1} (agreement {sAg[sProp]:0.000}, KL {sKl[sProp]:0.0000}): s = {sProp}");
        int exit = L;
        for (int l = L - 1; l >= 1; l--) if (kAg[l] >= agreeTarget) exit = l; else break;
        notes.Add(exit < L ? $"visual KV can be dropped from layer {exit} on (agreement {kAg[exit]:0.000}, KL {kKl[exit]:0.0000})"
            : "every layer still needs vision: no knockout keeps the agreement (no fixed exit)");
        var fires = firstFire.Where(f => f > sProp).ToList();
        int lfMin = Math.Min(sProp + 1, L - 1), lfMax = Math.Max(lfMin, Math.Min(exit - 1, L - 2));
        if (fires.Count > 0) { lfMin = Math.Max(sProp + 1, fires.Min()); lfMax = Math.Max(lfMin, Math.Min(lfMax, fires.Max())); }
        notes.Add($"filtering test (min cos < {defaults.LayerThreshold}) first fires at layers [{string.Join(", ", firstFire)}]; proposed L_f range {lfMin}..{lfMax}");
        notes.Add($"reference defaults: s = {defaults.ShallowLayers} (first test layer {defaults.ShallowLayers + 1}) of {L} layers"
            + (defaults.ShallowLayers + 1 >= L - 1 ? " — on this model they leave no layer to prune" : ""));
        var (sFinal, from, deadline, exitLayer, traded) = ScheduleProposal.Propose(L, sProp, exit, lfMin, lfMax);
        if (traded) notes.Add($"s lowered to {sFinal} so the filter acts before the exit (layer {exit})");
        var proposal = new PruningConfig
        {
            ShallowLayers = sFinal, FilterFrom = from, DeadlineLayer = deadline, ExitLayer = exitLayer,
        };
        // 3. The stages were measured one at a time; together, the value-aware selection must also
        // keep the right tokens. Run the real pruner with the measured s, half of it and none, at
        // every filtering layer, three norm thresholds, with the measured exit and without it:
        // teacher-forced, and free-running (the greedy caption a user would get). Keep the
        // cheapest whose greedy captions hold the agreement.
        var grid = ScheduleProposal.ShallowChoices(sFinal)
            .SelectMany(sh => ScheduleProposal.Grid(sh == sFinal ? proposal : proposal with { ShallowLayers = sh, FilterFrom = Math.Min(sh + 1, L - 1), DeadlineLayer = null }, L, defaults.TokensThreshold))
            .ToList();
        var sums = new (double Ag, double Caption, double Kl, double Flops, double Kept)[grid.Count];
        var unpruned = new Dictionary<object, List<long>>(); // each input's unpruned greedy caption, for the checks after this one
        foreach (var img in images)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            var emb = Embed(img);
            var (baseLp, tokens, _) = Run(emb, new NonePruner(), null);
            unpruned[img] = tokens;
            for (int i = 0; i < grid.Count; i++)
            {
                var (kl, ag, report) = Compare(emb, baseLp, tokens, grid[i].CreatePruner(L));
                var (_, own, _) = Run(emb, grid[i].CreatePruner(L), null);
                var caption = ScheduleProposal.TokenF1(own, tokens);
                sums[i] = (sums[i].Ag + ag / images.Count, sums[i].Caption + caption / images.Count, sums[i].Kl + kl / images.Count,
                    sums[i].Flops + report.Flops / images.Count, sums[i].Kept + (double)report.KeptTokens / images.Count);
            }
        }
        var candidates = grid.Select((g, i) => new Candidate(g.ShallowLayers, g.FilterFrom!.Value, g.TokensThreshold, g.ExitLayer, sums[i].Ag, sums[i].Caption, sums[i].Kl, sums[i].Flops, sums[i].Kept)).ToList();
        var (chosen, holds) = ScheduleProposal.Choose(candidates, agreeTarget);
        string exitWords = chosen.Exit is { } ce ? $"every visual token dropped from layer {ce} on" : "no fixed exit";
        notes.Add(holds
            ? $"checked together: s = {chosen.Shallow}, filtering from layer {chosen.FilterFrom} at norm threshold {chosen.TokensThreshold}, {exitWords}, is the cheapest schedule whose greedy captions keep {agreeTarget:P0} agreement ({chosen.CaptionAgreement:0.000}; teacher-forced {chosen.Agreement:0.000}; {chosen.KeptTokens:0.#} tokens kept)"
            : $"checked together: no schedule's greedy captions keep {agreeTarget:P0} agreement; the closest: s = {chosen.Shallow}, filtering from layer {chosen.FilterFrom} at norm threshold {chosen.TokensThreshold}, {exitWords} ({chosen.CaptionAgreement:0.000}; teacher-forced {chosen.Agreement:0.000})");
        proposal = grid[candidates.IndexOf(chosen)];
        notes.Add($"proposal: s = {proposal.ShallowLayers}, filtering test from layer {proposal.FilterFrom}, norm threshold {proposal.TokensThreshold}, budget deadline {proposal.DeadlineLayer}, {exitWords}");

        // 4. Prompts of several frames: the exit drops every frame, and the text compares frames
        // through the newest frame's deep rows. Check, on two-frame windows, the proposal as it is
        // and sparing the newest frame with each later exit for the older ones (greedy captions).
        var frameCandidates = new List<Candidate>();
        if (windows.Count > 0 && group == CacheGroup.Target && proposal.ExitLayer is not null)
        {
            var fgrid = ScheduleProposal.FrameGrid(proposal, L);
            var fsum = new (double Caption, double Flops, double Kept)[fgrid.Count];
            var perWindow = fgrid.Select(_ => new double[windows.Count]).ToList();
            for (int wi = 0; wi < windows.Count; wi++)
            {
                var w = windows[wi];
                ct.ThrowIfCancellationRequested();
                using var scope = torch.NewDisposeScope();
                var (wemb, wpos, wspans) = PruningBench.Embed(cap, w);
                var (_, reference, _) = Run(wemb, new NonePruner(), null, wpos, wspans);
                unpruned[w] = reference;
                for (int i = 0; i < fgrid.Count; i++)
                {
                    var (_, own, report) = Run(wemb, fgrid[i].CreatePruner(L), null, wpos, wspans);
                    perWindow[i][wi] = ScheduleProposal.TokenF1(own, reference);
                    fsum[i] = (fsum[i].Caption + perWindow[i][wi] / windows.Count,
                        fsum[i].Flops + report.Flops / windows.Count, fsum[i].Kept + (double)report.KeptTokens / windows.Count);
                }
            }
            // Exit: the older frames' (the newest is spared in all but the first).
            frameCandidates = fgrid.Select((g, i) => new Candidate(g.ShallowLayers, g.FilterFrom ?? g.FirstTestLayer, g.TokensThreshold, g.OlderFramesExitLayer ?? g.ExitLayer,
                double.NaN, fsum[i].Caption, double.NaN, fsum[i].Flops, fsum[i].Kept)).ToList();
            var (fc, fHolds) = ScheduleProposal.ChooseWithinOneSe(frameCandidates, perWindow, agreeTarget);
            var picked = fgrid[frameCandidates.IndexOf(fc)];
            notes.Add($"two-frame windows: every frame exiting keeps greedy captions at {frameCandidates[0].CaptionAgreement:0.000}; "
                + (picked.KeepNewestFrame
                    ? $"sparing the newest frame and dropping the older ones from layer {picked.OlderFramesExitLayer} on {(fHolds ? $"is the cheapest that keeps {agreeTarget:P0}" : $"is the cheapest within one standard error of the closest to {agreeTarget:P0}")} ({fc.CaptionAgreement:0.000})"
                    : fHolds ? "that holds the agreement: no frame needs sparing" : $"no variant keeps {agreeTarget:P0}; that comes closest"));
            proposal = picked;
        }

        // 5. The frame-budget governor's ladder below the proposal (FrameGovernor.Ladder), each rung
        // held on every input: two-frame windows where the model streams them, else the images.
        // Its floor is the earliest exit whose greedy captions keep floorAgreement.
        var ladder = FrameGovernor.Ladder(proposal with { MinExitLayer = 1 }, L, spans.Sum(v => v.Length)); // every exit, to find the floor
        var lsum = new (double Caption, double Flops, double Kept)[ladder.Count];
        double blind = 0; // a caption of no frame: what the prompt's common tokens alone agree
        bool onWindows = windows.Count > 0 && group == CacheGroup.Target;
        int inputs = onWindows ? windows.Count : images.Count;
        for (int n = 0; n < inputs; n++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            object input = onWindows ? windows[n] : images[n];
            var (lemb, lpos, lspans) = onWindows ? PruningBench.Embed(cap, windows[n]) : (Embed(images[n]), pos, spans);
            var reference = unpruned.TryGetValue(input, out var known) ? known : unpruned[input] = Run(lemb, new NonePruner(), null, lpos, lspans).Tok;
            blind += ScheduleProposal.TokenF1(Run(lemb, new AnalysisPruner(knockoutFrom: 0), null, lpos, lspans).Tok, reference) / inputs;
            for (int i = 0; i < ladder.Count; i++)
            {
                var (_, own, report) = Run(lemb, ladder[i].Pruning!.CreatePruner(L), null, lpos, lspans);
                lsum[i] = (lsum[i].Caption + ScheduleProposal.TokenF1(own, reference) / inputs,
                    lsum[i].Flops + report.Flops / inputs, lsum[i].Kept + (double)report.KeptTokens / inputs);
            }
        }
        var rungs = ladder.Select((l, i) => new LadderRung(l.Name, l.Pruning!, lsum[i].Caption, ScheduleProposal.FrameShare(lsum[i].Caption, blind), lsum[i].Kept, lsum[i].Flops)).ToList();
        int ladderExit = FrameGovernor.LadderExit(proposal, L);
        var earlier = rungs.Where(r => r.EveryFrameExit is { } x && x < ladderExit).ToDictionary(r => r.EveryFrameExit!.Value, r => r.FrameShare);
        int floor = ScheduleProposal.Floor(ladderExit, earlier.Select(kv => (kv.Key, kv.Value)), floorAgreement);
        string what = $"keep {floorAgreement:0.##} of what the frame adds to the greedy captions (caption F1 {blind:0.000} with no frame at all)";
        notes.Add(floor == ladderExit
            ? $"frame-budget governor: no exit before layer {ladderExit} would {what}; below the budget rungs it skips frames (min_exit_layer {floor})"
            : $"frame-budget governor: exit {floor} is the earliest to {what}: {earlier[floor]:0.00}"
              + (earlier.TryGetValue(floor - 1, out var below) ? $", exit {floor - 1} {below:0.00}" : "") + $". min_exit_layer {floor}: below it the governor skips frames");
        proposal = proposal with { MinExitLayer = floor };

        // 6. A dynamic-resolution family's resolution rungs (PixelRungs): the proposal on each image
        // at each lower pixel bound, down to the processor's least. Its floor (min_frame_pixels) is
        // the least bound whose greedy captions still keep floorAgreement of what the frame adds.
        var resolution = new List<ResolutionRung>();
        if (e.Model is IPixelBoundedVision pv && !onWindows)
        {
            long own = Math.Min(pv.MaxPixels, (long)images[0].Rows * images[0].Cols);
            var bounds = PixelRungs.For(pv, images[0].Rows, images[0].Cols, least: pv.SmallestBound).Bounds;
            var atBound = new (double Caption, double Tokens)[bounds.Count];
            var schedule = FrameGovernor.Ladder(proposal, L, spans.Sum(v => v.Length))[0].Pruning!; // the ladder's top rung, as the governor runs it
            for (int n = 0; n < images.Count; n++)
                for (int i = 0; i < bounds.Count; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    using var scope = torch.NewDisposeScope();
                    var p = cap.EmbedPrompt(new[] { images[n] }, userPrompt, bounds[i].MaxPixels);
                    (pos, spans) = (p.Positions, p.Spans);
                    if (group == CacheGroup.Source) start = p.NextPosition;
                    var (_, atTokens, _) = Run(p.Embeds, schedule.CreatePruner(L), null);
                    atBound[i] = (atBound[i].Caption + ScheduleProposal.TokenF1(atTokens, unpruned[images[n]]) / images.Count, atBound[i].Tokens + (double)spans.Sum(v => v.Length) / images.Count);
                }
            resolution = bounds.Select((b, i) => new ResolutionRung(b.MaxPixels, atBound[i].Tokens, atBound[i].Caption, ScheduleProposal.FrameShare(atBound[i].Caption, blind))).ToList();
            if (resolution.Count == 0)
                notes.Add($"resolution: the images ({images[0].Cols}×{images[0].Rows}) already read at the processor's least bound; no resolution floor proposed");
            else
            {
                long pixelFloor = ScheduleProposal.PixelFloor(own, resolution.Select(r => (r.MaxPixels, r.FrameShare)), floorAgreement);
                notes.Add(pixelFloor == own
                    ? $"resolution: no lower pixel bound would {what}; the governor keeps the frame's resolution (min_frame_pixels {pixelFloor})"
                    : $"resolution: {pixelFloor:N0} pixels is the least to {what}: {resolution.First(r => r.MaxPixels == pixelFloor).FrameShare:0.00}"
                      + (resolution.FirstOrDefault(r => r.MaxPixels < pixelFloor) is { } lower ? $", {lower.MaxPixels:N0} {lower.FrameShare:0.00}" : "") + $". min_frame_pixels {pixelFloor}");
                proposal = proposal with { MinFramePixels = pixelFloor };
            }
        }
        return new Analysis(L, images.Count, mass, minCos, over, top, kKl, kAg, sKl, sAg, firstFire.ToArray(), proposal, notes, candidates, frameCandidates, rungs, blind, resolution);
    }

    /// <summary>A fresh folder per run, so `ra analyze` never overwrites tracked files (docs/pruning is written only when asked).</summary>
    internal static string DefaultOut() => Path.Combine("runs", $"analyze-{DateTime.Now:yyyyMMdd-HHmmss}");

    static void Report(Analysis a, string outDir, string model)
    {
        Directory.CreateDirectory(outDir);
        var t = new Table().Title($"{model}: {a.Inputs} inputs").AddColumns("layer", "text→vision mass", "min cos", "‖contrib‖>0.2", "max ‖contrib‖", "knockout from L: KL", "agree", "bar text in 0..L-1: KL", "agree");
        for (int l = 0; l < a.Layers; l++)
            t.AddRow(l.ToString(), a.TextMass[l].ToString("0.000"), a.MinCos[l].ToString("0.0000"), a.OverNorm[l].ToString("0.0"), a.TopNorm[l].ToString("0.000"),
                a.KnockKl[l].ToString("0.0000"), a.KnockAgree[l].ToString("0.000"),
                l == 0 ? "–" : a.ShallowKl[l].ToString("0.0000"), l == 0 ? "–" : a.ShallowAgree[l].ToString("0.000"));
        AnsiConsole.Write(t);
        var ct = new Table().Title("schedules checked together: greedy captions against the unpruned ones (caption F1), and teacher-forced").AddColumns("s", "filter from", "norm threshold", "exit", "caption F1", "agree", "KL", "kept tokens", "prefill GFLOPs");
        foreach (var c in a.Candidates)
            ct.AddRow(c.Shallow.ToString(), c.FilterFrom.ToString(), c.TokensThreshold.ToString("0.###"), c.Exit?.ToString() ?? "–", c.CaptionAgreement.ToString("0.000"), c.Agreement.ToString("0.000"), c.Kl.ToString("0.0000"), c.KeptTokens.ToString("0.0"), (c.Flops / 1e9).ToString("0.000"));
        AnsiConsole.Write(ct);
        if (a.FrameCandidates.Count > 0)
        {
            var ft = new Table().Title("two-frame windows: the proposal, and sparing the newest frame (greedy captions against the unpruned ones)").AddColumns("newest frame", "older frames exit", "caption F1", "kept tokens", "prefill GFLOPs");
            foreach (var (c, i) in a.FrameCandidates.Select((c, i) => (c, i)))
                ft.AddRow(i == 0 ? "exits" : "spared", c.Exit?.ToString() ?? "–", c.CaptionAgreement.ToString("0.000"), c.KeptTokens.ToString("0.0"), (c.Flops / 1e9).ToString("0.000"));
            AnsiConsole.Write(ft);
        }
        var lt = new Table().Title("the frame-budget governor's ladder, each rung held (greedy captions against the unpruned ones)").AddColumns("rung", "caption F1", "share of the frame's", "kept tokens", "prefill GFLOPs", "");
        int floorExit = a.Proposal.MinExitLayer ?? 1;
        foreach (var r in a.Ladder)
            lt.AddRow(Markup.Escape(r.Name), r.CaptionAgreement.ToString("0.000"), r.FrameShare.ToString("0.00"), r.KeptTokens.ToString("0.0"), (r.Flops / 1e9).ToString("0.000"),
                r.EveryFrameExit < floorExit ? "below the floor: skipped" : "");
        lt.AddRow("no frame (every visual token dropped)", a.BlindCaptionAgreement.ToString("0.000"), "0", "0.0", "", "");
        AnsiConsole.Write(lt);
        if (a.Resolution.Count > 0)
        {
            var rt = new Table().Title("resolution rungs: the proposal at fewer pixels (greedy captions against the unpruned ones at full resolution)").AddColumns("max pixels", "visual tokens", "caption F1", "share of the frame's", "");
            foreach (var r in a.Resolution)
                rt.AddRow(r.MaxPixels.ToString("N0"), r.VisualTokens.ToString("0.0"), r.CaptionAgreement.ToString("0.000"), r.FrameShare.ToString("0.00"),
                    r.MaxPixels < a.Proposal.MinFramePixels ? "below the floor: not read" : "");
            AnsiConsole.Write(rt);
        }
        foreach (var n in a.Notes) AnsiConsole.MarkupLine($"[grey]•[/] {Markup.Escape(n)}");
        var sched = Path.Combine(outDir, "schedule.json");
        a.Proposal.Save(sched);
        Cli.WriteJson(Path.Combine(outDir, "analysis.json"), new
        {
            model, layers = a.Layers, inputs = a.Inputs, text_vision_mass = a.TextMass, min_cos = a.MinCos, over_norm_threshold = a.OverNorm,
            max_contrib_norm = a.TopNorm, knockout_kl = a.KnockKl, knockout_agreement = a.KnockAgree, shallow_kl = a.ShallowKl,
            shallow_agreement = a.ShallowAgree, first_fire = a.FirstFire, notes = a.Notes, proposal = System.Text.Json.Nodes.JsonNode.Parse(a.Proposal.ToJson()), // as schedule.json writes it
            candidates = a.Candidates.Select(c => new { shallow_layers = c.Shallow, filter_from = c.FilterFrom, tokens_threshold = c.TokensThreshold, exit_layer = c.Exit, caption_agreement = c.CaptionAgreement, agreement = c.Agreement, kl = c.Kl, kept_tokens = c.KeptTokens, flops = c.Flops }),
            ladder = a.Ladder.Select(r => new { rung = r.Name, exit_layer = r.Pruning.ExitLayer, budget = r.Pruning.Budget, keep_newest_frame = r.Pruning.KeepNewestFrame, caption_agreement = r.CaptionAgreement, frame_share = r.FrameShare, kept_tokens = r.KeptTokens, flops = r.Flops, below_floor = r.EveryFrameExit < floorExit }),
            no_frame_caption_agreement = a.BlindCaptionAgreement,
            min_exit_layer = a.Proposal.MinExitLayer,
            resolution = a.Resolution.Select(r => new { max_pixels = r.MaxPixels, visual_tokens = r.VisualTokens, caption_agreement = r.CaptionAgreement, frame_share = r.FrameShare, below_floor = r.MaxPixels < a.Proposal.MinFramePixels }),
            min_frame_pixels = a.Proposal.MinFramePixels,
            two_frame_candidates = a.FrameCandidates.Select((c, i) => new { keep_newest_frame = i > 0, older_frames_exit_layer = c.Exit, caption_agreement = c.CaptionAgreement, kept_tokens = c.KeptTokens, flops = c.Flops }),
        });
        AnsiConsole.MarkupLine($"[grey]proposed schedule:[/] {Markup.Escape(sched)}");
        double[] xs = Enumerable.Range(0, a.Layers).Select(i => (double)i).ToArray();
        double[] xs1 = Enumerable.Range(0, a.Layers + 1).Select(i => (double)i).ToArray();
        Plot(Path.Combine(outDir, "layer-dynamics.png"), "Per-layer cross-modal dynamics", "layer", new[]
        {
            ("text→vision attention mass", xs, a.TextMass), ("min cos(o − contrib_j, o), last token", xs, a.MinCos),
        });
        Plot(Path.Combine(outDir, "knockout.png"), "Removing vision: token agreement with the unpruned caption", "layer L", new[]
        {
            ("visual KV removed from layer L on", xs1, a.KnockAgree),
            ("text barred from vision in layers 0..L-1", xs[1..], a.ShallowAgree[1..]),
        });
        Plot(Path.Combine(outDir, "knockout-kl.png"), "Removing vision: KL(unpruned ‖ pruned) per caption token", "layer L", new[]
        {
            ("visual KV removed from layer L on", xs1, a.KnockKl),
            ("text barred from vision in layers 0..L-1", xs[1..], a.ShallowKl[1..]),
        });
        Plot(Path.Combine(outDir, "contrib-norms.png"), "Value contributions at the last prompt token", "layer", new[]
        {
            ("visual tokens with ‖contrib‖ > 0.2", xs, a.OverNorm), ("max ‖contrib‖ × 10", xs, a.TopNorm.Select(v => v * 10).ToArray()),
        });
    }

    static void Plot(string path, string title, string xlabel, (string Label, double[] X, double[] Y)[] series)
    {
        var plt = new ScottPlot.Plot();
        foreach (var (label, x, y) in series)
        {
            var s = plt.Add.Scatter(x, y);
            s.LegendText = label;
        }
        plt.Title(title);
        plt.XLabel(xlabel);
        plt.ShowLegend();
        plt.SavePng(path, 900, 500);
        AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(path)}[/]");
    }
}
