// Each line marked `error` must be refused by the declarations (the test counts the errors).
import { LimpetClient } from "limpet-client";

interface Chat {
  text: string;
}
const client = new LimpetClient("https://chat.example", { publishTimeout: "soon" }); // error
const sub = client.subscribe<Chat>("c", {
  onMessage(msg) {
    const n: number = msg.data.text; // error
    console.log(n);
  },
});
sub.publish({ txt: "hi" }); // error
client.on("connected", () => {}); // error
const offset: string = sub.position!.offset; // error
console.log(offset);
