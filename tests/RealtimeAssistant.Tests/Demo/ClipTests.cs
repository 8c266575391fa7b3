using RealtimeAssistant.Demo;

namespace RealtimeAssistant.Tests.Demo;

public class ClipTests
{
    private static readonly Lazy<List<Clip>> Clips = new(() =>
        Enumerable.Range(0, 25).Select(s => ClipGenerator.Generate(s, 20, 15)).ToList());

    [Fact]
    public void SameSeedGivesSameClip()
    {
        var a = ClipGenerator.Generate(42, 10, 15);
        var b = ClipGenerator.Generate(42, 10, 15);
        Assert.Equal(a.Events, b.Events);
        Assert.Equal(a.CaptionFor(0, 149), b.CaptionFor(0, 149));
        Assert.NotEqual(a.CaptionFor(-1, 149), ClipGenerator.Generate(43, 10, 15).CaptionFor(-1, 149));
    }

    [Fact]
    public void EventsMatchTheSceneGraphs()
    {
        var kinds = new HashSet<ClipEventKind>();
        foreach (var clip in Clips.Value)
        foreach (var e in clip.Events)
        {
            kinds.Add(e.Kind);
            var before = clip.SceneAt(e.Frame - 1).Objects.Select(o => o.Name).ToList();
            var after = clip.SceneAt(e.Frame);
            switch (e.Kind)
            {
                case ClipEventKind.Enters:
                    Assert.DoesNotContain(e.Object.Name, before);
                    Assert.Contains(after.Objects, o => o.Name == e.Object.Name);
                    break;
                case ClipEventKind.Leaves:
                    Assert.Contains(e.Object.Name, before);
                    Assert.DoesNotContain(after.Objects, o => o.Name == e.Object.Name);
                    break;
                default:
                    Assert.Equal(e.Object.Motion, after.Objects.Single(o => o.Name == e.Object.Name).Motion);
                    break;
            }
        }
        Assert.Equal(3, kinds.Count);
    }

    [Fact]
    public void ObjectsMoveSmoothlyInTheirMotionDirection()
    {
        int moves = 0;
        foreach (var clip in Clips.Value)
            for (int f = 1; f < clip.FrameCount; f++)
                foreach (var now in clip.ObjectsAt(f))
                {
                    var was = clip.ObjectsAt(f - 1).SingleOrDefault(o => o.Name == now.Name);
                    if (was == null) continue;
                    var (dx, dy) = was.Motion.Direction();
                    double step = ClipGenerator.Speed / clip.Fps;
                    Assert.Equal(was.X + dx * step, now.X, 9);
                    Assert.Equal(was.Y + dy * step, now.Y, 9);
                    Assert.Equal(was.Scale + was.Motion.Growth() * ClipGenerator.GrowRate / clip.Fps, now.Scale, 9);
                    if (dx != 0 || dy != 0) moves++;
                }
        Assert.True(moves > 1000);
    }

    [Fact]
    public void MotionChangesOnlyAtTurnEvents()
    {
        foreach (var clip in Clips.Value)
            for (int f = 1; f < clip.FrameCount; f++)
                foreach (var now in clip.ObjectsAt(f))
                {
                    var was = clip.ObjectsAt(f - 1).SingleOrDefault(o => o.Name == now.Name);
                    if (was != null && was.Motion != now.Motion)
                        Assert.Contains(clip.Events, e => e.Frame == f && e.Kind == ClipEventKind.Turns && e.Object.Name == now.Name);
                }
    }

    [Fact]
    public void ObjectsStayInFrameUnlessEnteringOrLeaving()
    {
        int exits = 0;
        foreach (var clip in Clips.Value)
        {
            Assert.All(Enumerable.Range(0, clip.FrameCount), f => Assert.NotEmpty(clip.SceneAt(f).Objects));
            var names = Enumerable.Range(0, clip.FrameCount).SelectMany(f => clip.ObjectsAt(f)).Select(o => o.Name).Distinct();
            foreach (var name in names)
            {
                // Once wholly inside, an object only sticks out on its way out: from then on it never
                // turns again, and it either leaves or is still heading out when the clip ends.
                bool wasInside = false;
                for (int f = 0; f < clip.FrameCount; f++)
                {
                    var o = clip.ObjectsAt(f).SingleOrDefault(o => o.Name == name);
                    if (o == null) continue;
                    Assert.InRange(o.Scale, ClipGenerator.MinScale - 1e-9, ClipGenerator.MaxScale + 1e-9);
                    bool whole = o.X - o.Extent >= -1e-9 && o.X + o.Extent <= 1 + 1e-9 && o.Y - o.Extent >= -1e-9 && o.Y + o.Extent <= 1 + 1e-9;
                    if (whole) { wasInside = true; continue; }
                    if (!wasInside) continue; // still entering
                    Assert.DoesNotContain(clip.Events, e => e.Frame > f && e.Object.Name == name && e.Kind == ClipEventKind.Turns);
                    bool leaves = clip.Events.Any(e => e.Kind == ClipEventKind.Leaves && e.Object.Name == name);
                    Assert.True(leaves || clip.ObjectsAt(clip.FrameCount - 1).Any(p => p.Name == name), $"seed {clip.Seed}: {name} vanished");
                    exits++;
                    break;
                }
            }
        }
        Assert.True(exits > 5);
    }

    [Fact]
    public void CaptionSegmentsPutEventsFirstAndScorePerfectly()
    {
        int withEvents = 0;
        foreach (var clip in Clips.Value)
            for (int to = 15; to < clip.FrameCount; to += 15)
            {
                string caption = clip.CaptionFor(to - 15, to);
                var events = clip.EventsBetween(to - 15, to).ToList();
                Assert.EndsWith(CaptionGrammar.Canonical(clip.SceneAt(to)), caption);
                if (events.Count > 0)
                {
                    withEvents++;
                    Assert.StartsWith(events[0].Sentence, caption);
                }
                Assert.Equal(1.0, AttributeScorer.Score(caption, clip.SceneAt(to), events).F1);
            }
        Assert.True(withEvents > 20);
    }

    [Fact]
    public void EventSentencesReadNaturally()
    {
        var o = new SceneObject(Shape.Ring, DemoColor.Orange, true, 0.5, 0.5, Motion.Left);
        Assert.Equal("an orange ring enters from the top .", new ClipEvent(3, ClipEventKind.Enters, o, "top").Sentence);
        Assert.Equal("the orange ring leaves .", new ClipEvent(3, ClipEventKind.Leaves, o).Sentence);
        Assert.Equal("the orange ring turns left .", new ClipEvent(3, ClipEventKind.Turns, o).Sentence);
        Assert.Equal("the orange ring stops .", new ClipEvent(3, ClipEventKind.Turns, o with { Motion = Motion.Still }).Sentence);
        Assert.Equal("the orange ring starts growing .", new ClipEvent(3, ClipEventKind.Turns, o with { Motion = Motion.Growing }).Sentence);
    }
}
