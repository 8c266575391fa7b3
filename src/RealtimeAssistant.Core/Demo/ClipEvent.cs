namespace RealtimeAssistant.Demo;

public enum ClipEventKind { Enters, Leaves, Turns }

/// <summary>
/// Something that happened at <see cref="Frame"/>. <see cref="Object"/> is the object's state at
/// that frame (for turns, with its new motion). <see cref="Side"/> is where an entering object came from.
/// </summary>
public sealed record ClipEvent(int Frame, ClipEventKind Kind, SceneObject Object, string Side = "")
{
    /// <summary>"a green star enters from the right ." / "the red circle leaves ." / "the blue square turns left ."</summary>
    public string Sentence => Kind switch
    {
        ClipEventKind.Enters => $"{Object.Color.Article()} {Object.Name} enters from the {Side} .",
        ClipEventKind.Leaves => $"the {Object.Name} leaves .",
        _ => Object.Motion switch
        {
            Motion.Still => $"the {Object.Name} stops .",
            Motion.Growing or Motion.Shrinking => $"the {Object.Name} starts {Object.Motion.Word()} .",
            _ => $"the {Object.Name} turns {Object.Motion.Word()} .",
        },
    };
}
