#version 330 core
// Straight alpha in, premultiplied out, to share the overlay's blend function.
in vec4 vColor;
out vec4 fragColor;

void main()
{
    fragColor = vec4(vColor.rgb * vColor.a, vColor.a);
}
